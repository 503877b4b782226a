// Deployed once per backed-up resource group (possibly in another subscription): a custom role holding
// exactly the Microsoft.Compute actions the app calls (backup/azure/compute.py; tests/test_infra.py
// derives them from the requests that code sends and compares), assignable only in this resource group,
// and its assignment to the app's identity here. Snapshots are taken in the disk's own resource group.
//
// Not listed, on purpose: the polls of long-running operations (GET of the Azure-AsyncOperation or
// Location URL ARM handed back), which are not actions on a disk or a snapshot.

targetScope = 'resourceGroup'

@description('Principal (object) id of the app\'s identity.')
param principalId string

@description('azd environment name, to tell apart the roles of several deployments.')
param environmentName string

// Backup: read the disk, take a snapshot of it, read access to the snapshot while it is copied, then
// revoke it and delete the snapshot.
var backupActions = [
  'Microsoft.Compute/disks/read'
  'Microsoft.Compute/snapshots/read'
  'Microsoft.Compute/snapshots/write'
  'Microsoft.Compute/snapshots/delete'
  'Microsoft.Compute/snapshots/beginGetAccess/action'
  'Microsoft.Compute/snapshots/endGetAccess/action'
]

// Restore (a new managed disk from a restore point, on demand and in the scheduled restore tests):
// create the disk, write the restore point into it through a write SAS (Upload: beginGetAccess and
// endGetAccess on the disk), and delete a disk whose restore failed half-way or a restore test's disk.
var restoreActions = [
  'Microsoft.Compute/disks/write'
  'Microsoft.Compute/disks/delete'
  'Microsoft.Compute/disks/beginGetAccess/action'
  'Microsoft.Compute/disks/endGetAccess/action'
]

var roleName = 'diskbackup disk operator ${uniqueString(subscription().id, resourceGroup().id, environmentName)}'

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, resourceGroup().id, environmentName, 'diskbackup-disk-operator')
  properties: {
    roleName: roleName
    description: 'diskbackup (${environmentName}): back up and restore the managed disks of resource group ${resourceGroup().name}.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: concat(backupActions, restoreActions)
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, role.id)
  properties: {
    roleDefinitionId: role.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'diskbackup (${environmentName}) backs up the disks of this resource group.'
  }
}

output roleDefinitionId string = role.id
