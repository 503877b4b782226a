// The Function App's own storage: the Functions host (AzureWebJobsStorage), the Durable Functions task
// hub on the default Azure Storage provider (queues, tables and blob leases), and the container Flex
// Consumption deploys the app package from. Reached only by the app's identity: no account key exists in
// any app setting, and Shared Key is switched off.

param name string
param location string
param tags object = {}

@description('Container holding the deployment package (Flex Consumption functionAppConfig.deployment).')
param deploymentContainerName string

@description('Principal (object) id of the app\'s identity.')
param principalId string

// Durable Functions on the Azure Storage provider with an identity needs these three data roles on the
// host account (Durable Functions docs, "Configure Durable Functions with managed identity").
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var hostRoles = [
  storageBlobDataContributor
  storageQueueDataContributor
  storageTableDataContributor
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206: the host's and the task hub's working state; the lasting record of every run is the catalog in the backup account, so LRS is enough here.
  // checkov:skip=CKV_AZURE_59: Flex Consumption reaches its host storage over the public endpoint unless the app joins a virtual network (not part of this template); access is by Entra identity only.
  // checkov:skip=CKV_AZURE_35: same as CKV_AZURE_59: without a virtual network the default network action must be Allow for the Functions host to reach its storage.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
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
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource dataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in hostRoles: {
  name: guid(account.id, principalId, role)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
