// The app's user-assigned managed identity: every Azure call the Function App makes (host storage,
// backup storage, ARM, Application Insights, the Durable Task Scheduler) runs as this one principal.
// User-assigned rather than system-assigned so that its role assignments can be made before the app
// exists and survive the app being redeployed.

@description('Name of the identity.')
param name string

@description('Region of the identity (the app\'s).')
param location string

param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
