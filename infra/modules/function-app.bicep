// The Function App on the Flex Consumption plan: Python 3.11, code deployed by azd from a blob container
// the app reads with its identity, and Durable Functions through the extension bundle (host.json).
// App settings arrive whole from main.bicep (the backup settings) and are joined here with the host's
// own: storage and Application Insights reached by identity, never by key.

param planName string
param appName string
param location string
param tags object = {}

@description('azd finds the app to deploy to by this tag (azure.yaml services.<name>).')
param serviceName string = 'api'

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Name of the host storage account (AzureWebJobsStorage).')
param hostStorageName string

@description('Blob endpoint of the host storage account, with its trailing slash.')
param hostBlobEndpoint string

param deploymentContainerName string

param applicationInsightsConnectionString string

@description('Memory of each instance in MB; billing is per GB-second of it.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('The backup\'s own app settings (backup/settings.py), name to value.')
param backupSettings object

@description('Further host settings (the Durable Task Scheduler switch), name to value.')
param extraSettings object = {}

// The host's storage and telemetry, reached by the user-assigned identity (AzureWebJobsStorage__* is the
// identity-based form of the connection; Flex Consumption takes no FUNCTIONS_WORKER_RUNTIME or
// FUNCTIONS_EXTENSION_VERSION: the runtime is functionAppConfig.runtime).
var hostSettings = {
  AzureWebJobsStorage__accountName: hostStorageName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: a nightly batch: after a zone outage Durable Functions resumes each orchestration from its last checkpoint, so zone redundancy (not offered in every Flex Consumption region) is left to the operator.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: the HTTP API (start a run, read its status) is called from outside and answers only with a function key; closing it needs private endpoints in a virtual network, which this template does not make.
  // checkov:skip=CKV_AZURE_17: callers authenticate with function keys; client certificates would lock out the command line and the Durable status URLs the API hands back.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales to zero between nightly runs on purpose; always-ready instances would be billed all day for a job that runs minutes a night.
  // checkov:skip=CKV_AZURE_213: the app serves no health route; it scales to zero between runs, and Durable Functions redoes the work of an instance that died.
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      appSettings: [for setting in items(union(backupSettings, extraSettings, hostSettings)): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No publishing with user names and passwords: azd deploys with an Entra token.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName
