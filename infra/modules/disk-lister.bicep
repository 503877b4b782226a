// Only for the tag selection (the default: disks tagged diskbackup=enabled anywhere in the subscription).
// Finding them is one list of the subscription's disks (GET /subscriptions/{id}/providers/
// Microsoft.Compute/disks), which ARM authorises at the subscription: so this role holds nothing but
// Microsoft.Compute/disks/read there. Snapshots and access stay limited to the backed-up resource groups
// (disk-operator.bicep). Select by resource group or by disk IDs to need no subscription-wide right.

targetScope = 'subscription'

@description('Principal (object) id of the app\'s identity.')
param principalId string

@description('azd environment name, to tell apart the roles of several deployments.')
param environmentName string

var listActions = [
  'Microsoft.Compute/disks/read'
]

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'diskbackup-disk-lister')
  properties: {
    roleName: 'diskbackup disk lister ${uniqueString(subscription().id, environmentName)}'
    description: 'diskbackup (${environmentName}): find the disks to back up by their tag.'
    type: 'CustomRole'
    assignableScopes: [
      subscription().id
    ]
    permissions: [
      {
        actions: listActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, role.id)
  properties: {
    roleDefinitionId: role.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'diskbackup (${environmentName}) lists the subscription\'s disks to find those tagged for backup.'
  }
}
