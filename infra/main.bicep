// diskbackup in Azure, for `azd up`: the Function App (Flex Consumption, Python 3.11, Durable Functions),
// its identity, host storage, monitoring, the backup Storage account, and the roles the identity needs,
// each at the narrowest scope that works. README.md, "Running it in Azure", explains the parameters.

targetScope = 'subscription'

// -- where -------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags every resource.')
param environmentName string

@minLength(1)
@description('Region of the Function App, its storage and monitoring (one that offers Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Region of the backup Storage account; empty = the app\'s. Choose another to keep backups out of the disks\' region.')
param backupLocation string = ''

@description('Resource group of the app; empty = rg-<environmentName>.')
param resourceGroupName string = ''

@description('An existing resource group for the backup Storage account: azd down leaves it and the backups alone, and the account is locked against deletion. Empty = rg-<environmentName>-backups, created and deleted with the app.')
param backupResourceGroupName string = ''

@description('Redundancy of the backup Storage account (page blobs: LRS, GRS or RA-GRS).')
@allowed([
  'Standard_LRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param backupStorageSku string = 'Standard_LRS'

@description('Days deleted or overwritten backup blobs stay restorable (blob soft delete).')
@minValue(1)
@maxValue(365)
param backupSoftDeleteDays int = 14

// -- what is backed up -------------------------------------------------------------------------------

@description('Subscription whose disks are backed up (BACKUP_SUBSCRIPTION_ID); empty = the deployment\'s.')
param disksSubscriptionId string = ''

@minLength(1)
@description('Comma-separated resource group IDs (/subscriptions/<id>/resourceGroups/<name>) whose disks are backed up: each gets the disk operator role.')
param diskResourceGroupIds string

@description('BACKUP_SELECT_TAG: back up disks carrying this tag (name=value). With no selection set the app selects diskbackup=enabled.')
param selectTag string = ''

@description('BACKUP_SELECT_RESOURCE_GROUP: back up every disk of this resource group (of disksSubscriptionId).')
param selectResourceGroup string = ''

@description('BACKUP_SELECT_DISK_IDS: back up these disks (comma-separated resource IDs).')
param selectDiskIds string = ''

// -- the app's settings (backup/settings.py; defaults are the app's own) --------------------------------

@description('BACKUP_ARM_ENDPOINT: Azure Resource Manager.')
param armEndpoint string = 'https://management.azure.com'

@description('BACKUP_CONTAINER: blob container of the backup page blobs.')
param backupContainer string = 'disk-backups'

@description('BACKUP_CATALOG_TABLE: table of runs and restore points.')
param catalogTable string = 'diskbackupcatalog'

@description('BACKUP_TASK_HUB: Durable Functions task hub.')
param taskHub string = 'diskbackup'

@description('BACKUP_SCHEDULE: NCRONTAB schedule of the nightly run (six fields, UTC).')
param schedule string = '0 0 1 * * *'

@description('BACKUP_MAX_PARALLEL: disks backed up at once within a run.')
@minValue(1)
@maxValue(50)
param maxParallel int = 4

@description('BACKUP_KEEP_SNAPSHOTS: keep each run\'s snapshot after its copy is verified.')
param keepSnapshots bool = false

@description('BACKUP_POLL_INITIAL_SECONDS: first wait between status polls.')
@minValue(1)
@maxValue(600)
param pollInitialSeconds int = 5

@description('BACKUP_POLL_MAX_SECONDS: longest wait between status polls.')
@minValue(1)
@maxValue(3600)
param pollMaxSeconds int = 60

@description('BACKUP_SNAPSHOT_TIMEOUT_MINUTES: deadline for a snapshot, an access grant or a revoke.')
@minValue(1)
@maxValue(1440)
param snapshotTimeoutMinutes int = 60

@description('BACKUP_COPY_TIMEOUT_MINUTES: deadline for a copy.')
@minValue(1)
@maxValue(20160)
param copyTimeoutMinutes int = 1440

@description('BACKUP_SAS_MINUTES: how long a snapshot\'s read access (SAS) lasts; renewed when work outlives it.')
@minValue(5)
@maxValue(1440)
param sasMinutes int = 120

@description('BACKUP_SNAPSHOT_COPY_TIMEOUT_MINUTES: deadline for a Premium SSD v2 / Ultra snapshot\'s background copy.')
@minValue(1)
@maxValue(10080)
param snapshotCopyTimeoutMinutes int = 720

@description('BACKUP_RETENTION: restore points kept per disk, e.g. daily=7,weekly=4,monthly=12,yearly=3 (a disk tag diskbackup-retention overrides).')
param retention string = 'daily=7,weekly=4,monthly=12,yearly=3'

@description('BACKUP_VERIFY_SCHEDULE: NCRONTAB schedule (UTC) of restore tests of each disk\'s newest restore point, e.g. 0 0 4 * * Sun; empty = none.')
param verifySchedule string = ''

// -- the incremental chain ---------------------------------------------------------------------------

@description('BACKUP_FULL_COPY_PERCENT: a night whose changes exceed this share of the disk copies it whole instead.')
@minValue(1)
@maxValue(100)
param fullCopyPercent int = 60

@description('BACKUP_VERIFY_SAMPLE_MIB: MiB of each disk read back and compared by SHA-256 every night (0: none).')
@minValue(0)
@maxValue(1048576)
param verifySampleMiB int = 64

@description('BACKUP_WRITES_PER_BLOB: writes in flight into one backup blob during an incremental copy.')
@minValue(1)
@maxValue(64)
param writesPerBlob int = 8

// -- alerts ------------------------------------------------------------------------------------------

@description('BACKUP_ALERT_WEBHOOK: an HTTPS URL (Teams, Slack or any JSON endpoint) told when a run goes wrong; empty = no alerts. A secret: whoever holds it can post.')
@secure()
param alertWebhook string = ''

@description('BACKUP_ALERT_STALE_HOURS: alert when a disk\'s newest good restore point is older than this.')
@minValue(1)
@maxValue(8760)
param alertStaleHours int = 36

// -- scale -------------------------------------------------------------------------------------------

@description('Where Durable Functions keeps orchestration state: the host storage account (AzureStorage), or a Durable Task Scheduler for estates of thousands of disks.')
@allowed([
  'AzureStorage'
  'DurableTaskScheduler'
])
param durableBackend string = 'AzureStorage'

@description('Durable Task Scheduler SKU (with durableBackend = DurableTaskScheduler).')
@allowed([
  'Consumption'
  'Dedicated'
])
param durableTaskSchedulerSku string = 'Consumption'

@description('Memory of each Flex Consumption instance, in MB.')
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

// -- names -------------------------------------------------------------------------------------------

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var appGroupName = empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
// Backups kept apart from the app live in a group azd did not create, so `azd down` never deletes it.
var keepBackups = !empty(backupResourceGroupName)
var backupGroupName = keepBackups ? backupResourceGroupName : 'rg-${environmentName}-backups'
var backupRegion = empty(backupLocation) ? location : backupLocation
var disksSubscription = empty(disksSubscriptionId) ? subscription().subscriptionId : disksSubscriptionId
var diskGroups = split(diskResourceGroupIds, ',')
var deploymentContainerName = 'app-package'
var useScheduler = (durableBackend == 'DurableTaskScheduler')
// The tag selection (also the app's default) lists the whole subscription's disks.
var selectsByTag = empty(selectResourceGroup) && empty(selectDiskIds)

resource appGroup 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: appGroupName
  location: location
  tags: tags
}

resource backupGroup 'Microsoft.Resources/resourceGroups@2022-09-01' = if (!keepBackups) {
  name: backupGroupName
  location: backupRegion
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: appGroup
  params: {
    name: 'id-diskbackup-${token}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: appGroup
  params: {
    logAnalyticsName: 'log-diskbackup-${token}'
    applicationInsightsName: 'appi-diskbackup-${token}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module hostStorage 'modules/host-storage.bicep' = {
  name: 'host-storage'
  scope: appGroup
  params: {
    name: 'stfunc${token}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    principalId: identity.outputs.principalId
  }
}

module backupStorage 'modules/backup-storage.bicep' = {
  name: 'backup-storage'
  scope: resourceGroup(backupGroupName)
  dependsOn: [
    backupGroup
  ]
  params: {
    name: 'stbackup${token}'
    location: backupRegion
    tags: tags
    skuName: backupStorageSku
    containerName: backupContainer
    catalogTableName: catalogTable
    softDeleteDays: backupSoftDeleteDays
    protectFromDeletion: keepBackups
    principalId: identity.outputs.principalId
  }
}

module scheduler 'modules/durable-task-scheduler.bicep' = if (useScheduler) {
  name: 'durable-task-scheduler'
  scope: appGroup
  params: {
    name: 'dts-diskbackup-${token}'
    location: location
    tags: tags
    taskHubName: taskHub
    skuName: durableTaskSchedulerSku
    principalId: identity.outputs.principalId
  }
}

// One per backed-up resource group, in whatever subscription it lives.
module diskOperator 'modules/disk-operator.bicep' = [for (groupId, i) in diskGroups: {
  name: 'disk-operator-${i}'
  scope: resourceGroup(split(trim(groupId), '/')[2], split(trim(groupId), '/')[4])
  params: {
    principalId: identity.outputs.principalId
    environmentName: environmentName
  }
}]

module diskLister 'modules/disk-lister.bicep' = if (selectsByTag) {
  name: 'disk-lister'
  scope: subscription(disksSubscription)
  params: {
    principalId: identity.outputs.principalId
    environmentName: environmentName
  }
}

// Every setting of backup/settings.py but the emulator's (BACKUP_ARM_TOKEN, BACKUP_ARM_CA_BUNDLE) and the
// Shared Key (BACKUP_STORAGE_KEY): in Azure the app authenticates as its identity. An empty value is
// "unset" to the app.
var backupSettings = {
  BACKUP_SUBSCRIPTION_ID: disksSubscription
  BACKUP_ARM_ENDPOINT: armEndpoint
  BACKUP_MANAGED_IDENTITY_CLIENT_ID: identity.outputs.clientId
  BACKUP_STORAGE_ACCOUNT: backupStorage.outputs.name
  BACKUP_BLOB_ENDPOINT: backupStorage.outputs.blobEndpoint
  BACKUP_TABLE_ENDPOINT: backupStorage.outputs.tableEndpoint
  BACKUP_CONTAINER: backupContainer
  BACKUP_CATALOG_TABLE: catalogTable
  BACKUP_TASK_HUB: taskHub
  BACKUP_SCHEDULE: schedule
  BACKUP_MAX_PARALLEL: string(maxParallel)
  BACKUP_SELECT_TAG: selectTag
  BACKUP_SELECT_RESOURCE_GROUP: selectResourceGroup
  BACKUP_SELECT_DISK_IDS: selectDiskIds
  BACKUP_KEEP_SNAPSHOTS: keepSnapshots ? 'true' : 'false'
  BACKUP_POLL_INITIAL_SECONDS: string(pollInitialSeconds)
  BACKUP_POLL_MAX_SECONDS: string(pollMaxSeconds)
  BACKUP_SNAPSHOT_TIMEOUT_MINUTES: string(snapshotTimeoutMinutes)
  BACKUP_COPY_TIMEOUT_MINUTES: string(copyTimeoutMinutes)
  BACKUP_SAS_MINUTES: string(sasMinutes)
  BACKUP_SNAPSHOT_COPY_TIMEOUT_MINUTES: string(snapshotCopyTimeoutMinutes)
  BACKUP_FULL_COPY_PERCENT: string(fullCopyPercent)
  BACKUP_VERIFY_SAMPLE_MIB: string(verifySampleMiB)
  BACKUP_WRITES_PER_BLOB: string(writesPerBlob)
  BACKUP_ALERT_WEBHOOK: alertWebhook
  BACKUP_ALERT_STALE_HOURS: string(alertStaleHours)
  BACKUP_RETENTION: retention
  BACKUP_VERIFY_SCHEDULE: verifySchedule
}

// The switch to the Durable Task Scheduler: host.json's extensions.durableTask.storageProvider, set by
// app settings (the Functions host reads AzureFunctionsJobHost__<path> as host.json values), so the
// package and its host.json stay the same for both back ends.
var schedulerSettings = useScheduler ? {
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${scheduler.outputs.endpoint};Authentication=ManagedIdentity;ClientID=${identity.outputs.clientId}'
} : {}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: appGroup
  params: {
    planName: 'plan-diskbackup-${token}'
    appName: 'func-diskbackup-${token}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostStorageName: hostStorage.outputs.name
    hostBlobEndpoint: hostStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    backupSettings: backupSettings
    extraSettings: schedulerSettings
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = appGroup.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output BACKUP_RESOURCE_GROUP string = backupGroupName
output BACKUP_STORAGE_ACCOUNT string = backupStorage.outputs.name
output BACKUP_BLOB_ENDPOINT string = backupStorage.outputs.blobEndpoint
