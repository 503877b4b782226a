// The Durable Task Scheduler, for estates too big for the Azure Storage task hub (main.bicep's
// durableBackend = 'DurableTaskScheduler'): a scheduler, the task hub the app's orchestrations live in
// (named like BACKUP_TASK_HUB), and Durable Task Data Contributor for the app's identity on that hub only.

param name string
param location string
param tags object = {}

@description('Task hub name: the app\'s BACKUP_TASK_HUB (host.json reads it as %BACKUP_TASK_HUB%).')
param taskHubName string

@description('Consumption: pay per action, up to 500 actions a second. Dedicated: capacity units of 2,000 actions a second each.')
@allowed([
  'Consumption'
  'Dedicated'
])
param skuName string = 'Consumption'

@description('Capacity units (Dedicated only).')
@minValue(1)
@maxValue(3)
param capacity int = 1

@description('Principal (object) id of the app\'s identity.')
param principalId string

// Durable Task Data Contributor (built-in role).
var durableTaskDataContributor = '0ad04412-c4d5-4796-b79c-f76d14c8d402'

var sku = (skuName == 'Dedicated') ? {
  name: skuName
  capacity: capacity
} : {
  name: skuName
}

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: sku
    // An empty list would refuse everyone; access is decided by Entra roles (below).
    ipAllowlist: [
      '0.0.0.0/0'
    ]
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

resource dataRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(taskHub.id, principalId, durableTaskDataContributor)
  scope: taskHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output endpoint string = scheduler.properties.endpoint
