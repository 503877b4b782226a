// The backup Storage account: the page blobs the disks are copied into (BACKUP_CONTAINER) and the
// catalog of runs and restore points (BACKUP_CATALOG_TABLE). It may sit in another region than the app
// and the disks (the copy is server-side), which is what gets a backup out of the disk's region.
// Only Entra identities get in: Shared Key is off, so the app authorises with its managed identity.

param name string

@description('Region of the backup account; need not be the app\'s or the disks\'.')
param location string

param tags object = {}

@description('Redundancy of the account. Standard page blobs are offered with LRS, GRS and RA-GRS.')
@allowed([
  'Standard_LRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param skuName string = 'Standard_LRS'

@description('Blob container of the backup page blobs (BACKUP_CONTAINER).')
param containerName string

@description('Table of the catalog (BACKUP_CATALOG_TABLE).')
param catalogTableName string

@description('Days a deleted or overwritten backup blob (and a deleted container) can still be restored.')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 14

@description('Lock the account against deletion (for backups kept in a resource group of their own).')
param protectFromDeletion bool = false

@description('Principal (object) id of the app\'s identity.')
param principalId string

// What the app does here: page blobs (create, Put Page From URL, Copy Blob, snapshots, read back to
// verify) and catalog rows; nothing more, so the two data-contributor roles on this account only.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var backupRoles = [
  storageBlobDataContributor
  storageTableDataContributor
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206: redundancy is the skuName parameter; the default LRS is deliberate, since the copy already leaves the disk's region (choose the account's region) and GRS costs a third more per GB.
  // checkov:skip=CKV_AZURE_59: the app runs on Flex Consumption without a virtual network, so it reaches the account over the public endpoint; access is by Entra identity only (Shared Key off).
  // checkov:skip=CKV_AZURE_35: same as CKV_AZURE_59: without a virtual network the default network action must be Allow.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource catalogTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: catalogTableName
}

resource dataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in backupRoles: {
  name: guid(account.id, principalId, role)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource lock 'Microsoft.Authorization/locks@2020-05-01' = if (protectFromDeletion) {
  name: 'diskbackup-keep-backups'
  scope: account
  properties: {
    level: 'CanNotDelete'
    notes: 'Holds the disk backups. Remove this lock on purpose before deleting the account.'
  }
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output tableEndpoint string = account.properties.primaryEndpoints.table
