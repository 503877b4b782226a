"""The infrastructure (``infra/*.bicep``, ``azure.yaml``), checked without Azure.

Every Bicep file is parsed with ``pycep-parser`` and its resources are read as data: what the README and
issue 11 promise (Flex Consumption, identity instead of keys, the backup account's protections, roles at
the narrowest scopes, the Durable Task Scheduler switch) is asserted on that data.

The custom role's actions are compared with what the code actually calls: every public method of
:class:`~backup.azure.compute.ComputeClient` is run against the compute emulator through a transport
that records each request, and each request is mapped to the Microsoft.Compute action ARM authorises it
with. A new method, or a new kind of request, fails the comparison until the role is reviewed.

pycep keeps a Bicep reference apart from a string literal only in its Python objects (a reference is a
:class:`pycep.models.BicepElement`, a literal a plain ``str``); the helpers here rely on that.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pycep import BicepParser
from pycep.models import BicepElement

from backup.azure.arm import ArmClient
from backup.azure.compute import ComputeClient, upload_size_for
from backup.azure.credentials import StaticTokenProvider
from backup.azure.lro import LroStatus
from backup.azure.transport import Transport
from backup.errors import AzureHttpError
from backup.settings import SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"

#: Settings that stay unset in Azure, and why.
NOT_IN_AZURE = {
    "BACKUP_ARM_TOKEN": "a fixed token, accepted only for the compute emulator on loopback",
    "BACKUP_ARM_CA_BUNDLE": "the compute emulator's own certificate authority",
    "BACKUP_STORAGE_KEY": "Shared Key; in Azure the identity authorises (and the account refuses keys)",
}

#: Built-in roles, by the GUIDs Azure gives them.
ROLE = {
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Durable Task Data Contributor": "0ad04412-c4d5-4796-b79c-f76d14c8d402",
}
#: Broad built-in roles nothing here may hand out: Owner, Contributor, User Access Administrator, Reader.
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7",
}

#: What restore (a later issue) needs on a backed-up resource group, beyond backing up.
RESTORE_ACTIONS = {
    "Microsoft.Compute/disks/write",
    "Microsoft.Compute/disks/delete",
    "Microsoft.Compute/disks/beginGetAccess/action",
    "Microsoft.Compute/disks/endGetAccess/action",
}

DTS_OVERRIDE_PREFIX = "AzureFunctionsJobHost__extensions__durableTask__"
COMPUTE = "Microsoft.Compute"


# -- reading Bicep -------------------------------------------------------------------------------------------


@cache
def bicep(path: Path) -> dict[str, Any]:
    """The parse of one Bicep file (pycep's JSON-like structure, references kept as BicepElement)."""
    return BicepParser().parse(file_path=path)


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def module_file(name: str) -> Path:
    return INFRA / "modules" / f"{name}.bicep"


def is_ref(value: Any, name: str | None = None) -> bool:
    """Whether ``value`` is a reference to a symbol (``name``, if given), not a string literal."""
    return isinstance(value, BicepElement) and (name is None or str(value) == name)


def resource(doc: Mapping[str, Any], symbol: str) -> dict[str, Any]:
    """A resource's body (inside any loop or condition wrapper) and its type, as ``{"type", "body"}``."""
    entry = doc["resources"][symbol]
    config = entry["config"]
    body = config["config"] if "loop_type" in config or "condition" in config else config
    return {"type": entry["type"], "body": body, "config": config}


def resources_of_type(doc: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: resource(doc, name) for name, entry in doc["resources"].items() if entry["type"] == kind}


def variable(doc: Mapping[str, Any], name: str) -> Any:
    return doc["variables"][name]["value"]


def resolve(doc: Mapping[str, Any], value: Any) -> Any:
    """Follow references to variables through to their values (lists and objects element-wise)."""
    if is_ref(value) and str(value) in doc.get("variables", {}):
        return resolve(doc, variable(doc, str(value)))
    if isinstance(value, list):
        return [resolve(doc, item) for item in value]
    return value


def decorator(param: Mapping[str, Any], kind: str) -> Any:
    for item in param["decorators"]:
        if item["type"] == kind:
            return item["argument"]
    return None


def function(value: Any, kind: str) -> dict[str, Any]:
    """The parameters of a function call ``value``, which must be a call of ``kind``."""
    assert isinstance(value, dict) and "function" in value, f"expected a {kind}() call, got {value!r}"
    assert value["function"]["type"] == kind, value
    return dict(value["function"]["parameters"])


def accessor(value: Any) -> list[Any]:
    """``a.b.c`` as ``[a, b, c]`` (pycep nests property accessors to the right)."""
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        operands = value["operator"]["operands"]
        return [*accessor(operands["operand_1"]), *accessor(operands["operand_2"])]
    return [value]


def role_assignments(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every role assignment of a file: its role GUIDs (a loop gives several), scope and principal."""
    found = []
    for name, res in resources_of_type(doc, "Microsoft.Authorization/roleAssignments").items():
        props = res["body"]["properties"]
        role = props["roleDefinitionId"]
        if isinstance(role, dict) and "function" in role:
            role_name = function(role, "subscription_resource_id")["resource_name_1"]
            loop = res["config"].get("loop_type")
            if loop is not None and is_ref(role_name, loop["detail"]["item_name"]):
                guids = resolve(doc, loop["detail"]["array_name"])
            else:
                guids = [resolve(doc, role_name)]
        else:
            guids = [role]  # a custom role's id, e.g. role.id
        found.append(
            {
                "symbol": name,
                "roles": guids,
                "scope": res["body"].get("scope"),
                "principalId": props["principalId"],
                "principalType": props["principalType"],
            }
        )
    return found


# -- the files are there and parse ---------------------------------------------------------------------------


def test_every_bicep_file_parses() -> None:
    files = bicep_files()
    names = {path.relative_to(INFRA).as_posix() for path in files}
    assert "main.bicep" in names
    assert len(files) >= 8, names
    for path in files:
        doc = bicep(path)
        assert doc["resources"] or doc["modules"], f"{path.name} declares nothing"


def test_main_uses_every_module_and_only_existing_ones() -> None:
    used = {entry["detail"]["path"] for entry in bicep(MAIN)["modules"].values()}
    for path in used:
        assert (INFRA / path).is_file(), f"main.bicep refers to missing {path}"
    on_disk = {path.relative_to(INFRA).as_posix() for path in (INFRA / "modules").glob("*.bicep")}
    assert on_disk == used, "a module no deployment uses, or one main.bicep names twice"


def test_no_account_keys_or_connection_strings_anywhere() -> None:
    for path in bicep_files():
        text = path.read_text()
        for secret_source in ("listKeys(", "AccountKey=", "SharedAccessSignature", "listServiceSas("):
            assert secret_source not in text, f"{path.name} handles {secret_source}"


def test_azure_yaml_deploys_the_function_app_from_the_repository_root() -> None:
    text = (ROOT / "azure.yaml").read_text()
    # A few keys of a small file: parsed by hand rather than adding a YAML package.
    assert re.search(r"^name: diskbackup$", text, re.M)
    assert re.search(r"^infra:\n  provider: bicep\n  path: infra\n  module: main$", text, re.M)
    # Older azd deleted pre-existing resource groups the deployment touched: the disks' own groups.
    assert re.search(r'^requiredVersions:\n  azd: ">= 1\.24\.1"$', text, re.M)
    service = re.search(r"^services:\n  (\w+):\n((?:    .*\n)+)", text, re.M)
    assert service is not None
    body = dict(line.strip().split(": ", 1) for line in service.group(2).splitlines())
    assert body == {"project": ".", "language": "python", "host": "function"}
    app = resource(bicep(module_file("function-app")), "app")["body"]
    assert function(app["tags"], "union")["arg_2"] == {"'azd-service-name'": "serviceName"}
    assert bicep(module_file("function-app"))["parameters"]["serviceName"]["default"] == service.group(1)


def test_parameters_file_names_real_parameters_and_every_required_one() -> None:
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    params = bicep(MAIN)["parameters"]
    assert set(given) <= set(params), set(given) - set(params)
    required = {name for name, param in params.items() if param.get("default") is None}
    assert required <= set(given), f"azd cannot supply {required - set(given)}"
    for name, entry in given.items():
        assert re.fullmatch(r"\$\{[A-Z_]+(=[A-Za-z0-9]*)?\}", entry["value"]), (name, entry)


# -- the Function App ----------------------------------------------------------------------------------------


def test_function_app_is_flex_consumption_python_311_with_its_user_assigned_identity() -> None:
    doc = bicep(module_file("function-app"))
    plan = resource(doc, "plan")
    assert plan["type"] == "Microsoft.Web/serverfarms"
    assert plan["body"]["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["body"]["properties"]["reserved"] is True  # Linux

    app = resource(doc, "app")["body"]
    assert app["kind"] == "functionapp,linux"
    assert accessor(app["properties"]["serverFarmId"]) == ["plan", "id"]
    assert app["identity"]["type"] == "UserAssigned"
    assert list(app["identity"]["userAssignedIdentities"]) == ["'${identityId}'"]
    config = app["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert is_ref(storage["authentication"]["userAssignedIdentityResourceId"], "identityId")


def test_function_app_accepts_https_only_and_no_passwords() -> None:
    doc = bicep(module_file("function-app"))
    app = resource(doc, "app")["body"]["properties"]
    assert app["httpsOnly"] is True
    assert app["siteConfig"]["minTlsVersion"] == "1.2"
    assert app["siteConfig"]["ftpsState"] == "Disabled"
    assert app["siteConfig"]["remoteDebuggingEnabled"] is False
    policies = resources_of_type(doc, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {res["body"]["name"]: res["body"]["properties"]["allow"] for res in policies.values()} == {
        "ftp": False,
        "scm": False,
    }


def test_the_host_reaches_storage_and_telemetry_by_identity() -> None:
    doc = bicep(module_file("function-app"))
    host = variable(doc, "hostSettings")
    assert is_ref(host["AzureWebJobsStorage__accountName"], "hostStorageName")
    assert host["AzureWebJobsStorage__credential"] == "managedidentity"
    assert is_ref(host["AzureWebJobsStorage__clientId"], "identityClientId")
    assert "AzureWebJobsStorage" not in host  # the connection-string form, which carries a key
    authentication = host["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert authentication == "ClientId=${identityClientId};Authorization=AAD"
    # Flex Consumption refuses these two: the runtime is functionAppConfig.runtime.
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"} & set(host)

    app_settings = resource(doc, "app")["body"]["properties"]["siteConfig"]["appSettings"]
    source = function(app_settings["loop_type"]["detail"]["array_name"], "items")["arg_1"]
    assert function(source, "union") == {
        "arg_1": "backupSettings",
        "arg_2": "extraSettings",
        "arg_3": "hostSettings",  # last: the host's own settings cannot be overridden by the others
    }

    monitoring = bicep(module_file("monitoring"))
    insights = resource(monitoring, "appInsights")["body"]["properties"]
    assert insights["DisableLocalAuth"] is True
    assert accessor(insights["WorkspaceResourceId"]) == ["workspace", "id"]
    [publisher] = role_assignments(monitoring)
    assert publisher["roles"] == [ROLE["Monitoring Metrics Publisher"]]
    assert publisher["scope"] == "appInsights"


def test_host_json_runs_durable_functions_from_the_bundle_on_the_default_provider() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    bundle = host["extensionBundle"]
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert re.fullmatch(r"\[4\.\*, 5\.0\.0\)", bundle["version"])
    durable = host["extensions"]["durableTask"]
    assert durable["hubName"] == "%BACKUP_TASK_HUB%"
    # No storageProvider: the default Azure Storage provider, on AzureWebJobsStorage.
    assert "storageProvider" not in durable


# -- storage -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["host-storage", "backup-storage"])
def test_storage_accounts_take_identities_only_over_tls_12(name: str) -> None:
    props = resource(bicep(module_file(name)), "account")["body"]["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["allowBlobPublicAccess"] is False
    assert props["defaultToOAuthAuthentication"] is True


def test_backup_account_keeps_deleted_blobs_and_holds_the_container_and_catalog() -> None:
    doc = bicep(module_file("backup-storage"))
    blob = resource(doc, "blobService")["body"]["properties"]
    assert blob["deleteRetentionPolicy"] == {"enabled": True, "days": "softDeleteDays"}
    assert blob["containerDeleteRetentionPolicy"] == {"enabled": True, "days": "softDeleteDays"}
    assert doc["parameters"]["softDeleteDays"]["default"] >= 7

    container = resource(doc, "container")["body"]
    assert is_ref(container["name"], "containerName")
    assert container["properties"]["publicAccess"] == "None"
    table = resource(doc, "catalogTable")
    assert table["type"] == "Microsoft.Storage/storageAccounts/tableServices/tables"
    assert is_ref(table["body"]["name"], "catalogTableName")

    lock = resource(doc, "lock")
    assert lock["body"]["properties"]["level"] == "CanNotDelete"
    assert lock["body"]["scope"] == "account"
    assert is_ref(lock["config"]["condition"], "protectFromDeletion")


def test_backup_account_may_live_in_another_region_than_the_app() -> None:
    main = bicep(MAIN)
    assert main["parameters"]["backupLocation"]["default"] == ""
    region = variable(main, "backupRegion")["operator"]["operands"]
    assert function(region["condition"], "empty") == {"item_to_test": "backupLocation"}
    assert is_ref(region["true_value"], "location") and is_ref(region["false_value"], "backupLocation")
    backup = main["modules"]["backupStorage"]["config"]
    assert is_ref(backup["params"]["location"], "backupRegion")
    assert is_ref(resource(main, "backupGroup")["body"]["location"], "backupRegion")
    app = main["modules"]["functionApp"]["config"]
    assert is_ref(app["params"]["location"], "location")


def test_backups_kept_apart_live_in_a_group_azd_did_not_create_and_are_locked() -> None:
    main = bicep(MAIN)
    assert main["parameters"]["backupResourceGroupName"]["default"] == ""
    keep = variable(main, "keepBackups")["operator"]
    assert keep["type"] == "not" and function(keep["operands"]["bool_value"], "empty") == {
        "item_to_test": "backupResourceGroupName"
    }
    # azd down deletes the resource groups its deployment created, and only those: with a group of
    # their own the backups are not created (so not deleted) with the app ...
    group = resource(main, "backupGroup")["config"]["condition"]["operator"]
    assert group["type"] == "not" and is_ref(group["operands"]["bool_value"], "keepBackups")
    backup = main["modules"]["backupStorage"]["config"]
    assert function(backup["scope"], "resource_group") == {
        "resource_group_name": "backupGroupName",
        "subscription_id": None,
    }
    # ... and there the account is locked against deletion.
    assert is_ref(backup["params"]["protectFromDeletion"], "keepBackups")


def test_backup_container_and_table_are_the_ones_the_app_is_told() -> None:
    main = bicep(MAIN)
    backup = main["modules"]["backupStorage"]["config"]["params"]
    settings = variable(main, "backupSettings")
    assert is_ref(backup["containerName"], "backupContainer")
    assert is_ref(settings["BACKUP_CONTAINER"], "backupContainer")
    assert is_ref(backup["catalogTableName"], "catalogTable")
    assert is_ref(settings["BACKUP_CATALOG_TABLE"], "catalogTable")
    assert accessor(settings["BACKUP_STORAGE_ACCOUNT"]) == ["backupStorage", "outputs", "name"]


# -- roles ---------------------------------------------------------------------------------------------------


def test_host_storage_grants_what_durable_functions_needs_on_that_account_only() -> None:
    [assignment] = role_assignments(bicep(module_file("host-storage")))
    assert sorted(assignment["roles"]) == sorted(
        ROLE[name]
        for name in (
            "Storage Blob Data Contributor",
            "Storage Queue Data Contributor",
            "Storage Table Data Contributor",
        )
    )
    assert assignment["scope"] == "account"


def test_backup_storage_grants_blob_and_table_data_contributor_on_that_account_only() -> None:
    [assignment] = role_assignments(bicep(module_file("backup-storage")))
    assert sorted(assignment["roles"]) == sorted(
        [ROLE["Storage Blob Data Contributor"], ROLE["Storage Table Data Contributor"]]
    )
    assert assignment["scope"] == "account"


def test_every_role_goes_to_the_apps_identity_and_none_is_broad() -> None:
    count = 0
    for path in bicep_files():
        for assignment in role_assignments(bicep(path)):
            count += 1
            assert is_ref(assignment["principalId"], "principalId"), (path.name, assignment)
            assert assignment["principalType"] == "ServicePrincipal"
            assert not set(map(str, assignment["roles"])) & BROAD_ROLES, (path.name, assignment)
    assert count >= 6


def test_disk_operator_role_is_assignable_only_in_its_resource_group() -> None:
    doc = bicep(module_file("disk-operator"))
    assert doc["globals"]["scope"]["value"] == "resourceGroup"
    role = resource(doc, "role")["body"]["properties"]
    assert role["type"] == "CustomRole"
    [scope] = role["assignableScopes"]
    this_group = function(accessor(scope)[0], "resource_group")
    assert this_group == {"resource_group_name": None, "subscription_id": None}
    assert accessor(scope)[1:] == ["id"]
    [permissions] = role["permissions"]
    assert function(permissions["actions"], "concat") == {"arg_1": "backupActions", "arg_2": "restoreActions"}
    assert permissions["dataActions"] == [] and permissions["notActions"] == []
    [assignment] = role_assignments(doc)
    assert accessor(assignment["roles"][0]) == ["role", "id"]
    assert assignment["scope"] is None  # the module's own resource group


def test_disk_operator_is_deployed_to_each_listed_resource_group_in_its_own_subscription() -> None:
    main = bicep(MAIN)
    operator = main["modules"]["diskOperator"]["config"]
    assert operator["loop_type"]["detail"]["array_name"] == "diskGroups"
    groups = function(variable(main, "diskGroups"), "split")
    assert groups == {"input_string": "diskResourceGroupIds", "delimiter": ","}
    scope = function(operator["config"]["scope"], "resource_group")
    # /subscriptions/<id>/resourceGroups/<name>: fields 2 and 4 of the ID split on '/'.
    for field, index in (("subscription_id", 2), ("resource_group_name", 4)):
        operands = scope[field]["operator"]["operands"]
        assert operands["operand_2"] == index
        split = function(operands["operand_1"], "split")
        assert split["delimiter"] == "/"
        assert function(split["input_string"], "trim") == {"string_to_trim": "groupId"}
    assert accessor(operator["config"]["params"]["principalId"]) == ["identity", "outputs", "principalId"]


def test_subscription_wide_disk_read_only_for_the_tag_selection() -> None:
    main = bicep(MAIN)
    lister = main["modules"]["diskLister"]["config"]
    assert is_ref(lister["condition"], "selectsByTag")
    condition = variable(main, "selectsByTag")["operator"]
    assert condition["type"] == "and"
    assert [function(operand, "empty") for operand in condition["operands"].values()] == [
        {"item_to_test": "selectResourceGroup"},
        {"item_to_test": "selectDiskIds"},
    ]
    assert function(lister["config"]["scope"], "subscription") == {"subscription_id": "disksSubscription"}
    doc = bicep(module_file("disk-lister"))
    assert doc["globals"]["scope"]["value"] == "subscription"
    [permissions] = resource(doc, "role")["body"]["properties"]["permissions"]
    assert resolve(doc, permissions["actions"]) == ["Microsoft.Compute/disks/read"]


# -- the role against the code -------------------------------------------------------------------------------


class RecordingTransport(Transport):
    """The product's transport, noting each request's method and URL before sending it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[tuple[str, str]] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self.requests.append((method.upper(), url))
        return super().request(method, url, *args, **kwargs)


_COMPUTE_PATH = re.compile(
    r"/subscriptions/[^/]+(?:/resourceGroups/[^/]+)?/providers/Microsoft\.Compute"
    r"/(?P<kind>disks|snapshots)(?:/(?P<name>[^/]+)(?:/(?P<action>[^/]+))?)?",
    re.IGNORECASE,
)
_OPERATION_PATH = re.compile(r"/subscriptions/[^/]+/providers/Microsoft\.Compute/locations/.+", re.IGNORECASE)


def rbac_action(method: str, url: str) -> str | None:
    """The Microsoft.Compute action ARM authorises a request with; None for a poll of an operation.

    The status and result URLs of a long-running operation (under ``locations/``) belong to the
    operation ARM handed back, not to a disk or a snapshot.
    """
    path = urlsplit(url).path
    if _OPERATION_PATH.fullmatch(path):
        return None
    match = _COMPUTE_PATH.fullmatch(path)
    assert match is not None, f"an ARM call this test cannot map to an action: {method} {path}"
    kind, name, action = match.group("kind").lower(), match.group("name"), match.group("action")
    if action is not None:
        assert method == "POST", (method, path)
        return f"Microsoft.Compute/{kind}/{action}/action"
    verb = {"GET": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}[method]
    assert name is not None or verb == "read", (method, path)
    return f"Microsoft.Compute/{kind}/{verb}"


def test_rbac_action_mapping() -> None:
    base = "https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute"
    cases = [
        ("GET", f"{base}/disks/d?api-version=1", "Microsoft.Compute/disks/read"),
        ("GET", f"https://m/subscriptions/s/providers/{COMPUTE}/disks", "Microsoft.Compute/disks/read"),
        ("PUT", f"{base}/snapshots/s", "Microsoft.Compute/snapshots/write"),
        ("DELETE", f"{base}/snapshots/s", "Microsoft.Compute/snapshots/delete"),
        ("POST", f"{base}/snapshots/s/beginGetAccess", "Microsoft.Compute/snapshots/beginGetAccess/action"),
        ("POST", f"{base}/disks/d/endGetAccess", "Microsoft.Compute/disks/endGetAccess/action"),
        ("GET", "https://m/subscriptions/s/providers/Microsoft.Compute/locations/x/DiskOperations/1", None),
    ]
    for method, url, expected in cases:
        assert rbac_action(method, url) == expected, (method, url)
    with pytest.raises(AssertionError):
        rbac_action("GET", "https://m/subscriptions/s/providers/Microsoft.Network/virtualNetworks")


@pytest.fixture
def recorded_compute(proving_ground: Any) -> Iterator[tuple[ComputeClient, RecordingTransport]]:
    transport = RecordingTransport(verify=str(proving_ground.arm_ca_cert), sleep=lambda _: None)
    arm = ArmClient(
        proving_ground.arm_endpoint,
        StaticTokenProvider(proving_ground.arm_token),
        transport,
        default_retry_after=0,
    )
    yield ComputeClient(arm), transport
    proving_ground.control("DELETE", "/faults")


def _finish(compute: ComputeClient, status: LroStatus) -> LroStatus:
    for _ in range(30):
        if status.done:
            return status
        status = compute.poll(status)
    raise AssertionError(f"still running: {status}")


def test_disk_operator_role_holds_exactly_the_actions_the_code_calls(
    proving_ground: Any, recorded_compute: tuple[ComputeClient, RecordingTransport], unique_name: str
) -> None:
    compute, transport = recorded_compute
    public = {
        name
        for name in dir(ComputeClient)
        if not name.startswith("_") and callable(getattr(ComputeClient, name))
    }
    ground = proving_ground
    group, sub = ground.resource_group, ground.subscription_id
    made = ground.control("PUT", f"/resourceGroups/{group}/disks/{unique_name}", {"size_bytes": 4 << 20})
    assert "error" not in made, made
    disk_id = ground.disk_id(unique_name)

    # -- backup: every method a backup run uses, or that reads what it made ---------------------------
    exercised = {"get_disk", "list_disks", "get_snapshot", "list_snapshots", "begin_create_snapshot"}
    compute.get_disk(disk_id)
    compute.list_disks(sub, group)
    compute.list_disks(sub, tags={"diskbackup": "enabled"})  # the tag selection: the whole subscription
    started = compute.begin_create_snapshot(disk_id, location=ground.location, run_id=f"infra-{unique_name}")
    assert _finish(compute, started.operation).succeeded
    compute.get_snapshot(started.snapshot_id)
    compute.list_snapshots(sub, group, tags={"createdBy": "diskbackup"})
    exercised |= {"poll", "begin_grant_access", "read_access_sas"}
    exercised |= {"begin_revoke_access", "begin_delete_snapshot", "begin_update_snapshot_tags"}
    # The chain tags tonight's snapshot as the next night's diff base (PATCH: snapshots/write).
    assert _finish(
        compute, compute.begin_update_snapshot_tags(started.snapshot_id, {"base": "yes"})
    ).succeeded
    grant = _finish(compute, compute.begin_grant_access(started.snapshot_id, 600))
    assert compute.read_access_sas(grant).startswith("http")
    assert _finish(compute, compute.begin_revoke_access(started.snapshot_id)).succeeded
    assert _finish(compute, compute.begin_delete_snapshot(started.snapshot_id)).succeeded
    backup_actions = {action for method, url in transport.requests if (action := rbac_action(method, url))}
    transport.requests.clear()

    # -- restore: a new disk from a backup blob or a snapshot, and access to a disk -------------------
    exercised |= {"begin_create_disk_from_blob", "begin_create_disk_from_snapshot"}
    account = f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Storage/storageAccounts/stbk"
    snapshots = disk_id[: disk_id.lower().index("/providers/")] + "/providers/Microsoft.Compute/snapshots"
    starts: list[Callable[[], LroStatus]] = [
        lambda: compute.begin_create_disk_from_blob(
            ground.disk_id(f"{unique_name}-import"),
            location=ground.location,
            source_uri=f"https://backups.blob.core.windows.net/disk-backups/{unique_name}.vhd",
            storage_account_id=account,
        ),
        lambda: compute.begin_create_disk_from_snapshot(
            ground.disk_id(f"{unique_name}-copy"),
            location=ground.location,
            snapshot_id=f"{snapshots}/{unique_name}-gone",
        ),
    ]
    for start in starts:
        # The emulator may refuse the source; the request was sent, and that is what counts here.
        with contextlib.suppress(AzureHttpError):
            _finish(compute, start())
    assert _finish(compute, compute.begin_grant_access(disk_id, 600)).succeeded
    assert _finish(compute, compute.begin_revoke_access(disk_id)).succeeded
    # A restore by direct upload: a disk made for upload, written, finished, and deleted by its restore.
    exercised |= {"begin_create_upload_disk", "get_disk_state", "begin_delete_disk"}
    restore_id = f"infra-{unique_name}"
    upload = compute.begin_create_upload_disk(
        ground.disk_id(f"{unique_name}-up"),
        location=ground.location,
        upload_size_bytes=upload_size_for(20 << 20),
        sku="Standard_LRS",
        restore_id=restore_id,
    )
    assert upload.operation is not None and _finish(compute, upload.operation).succeeded
    assert compute.get_disk_state(upload.disk_id) == "ReadyToUpload"
    assert _finish(compute, compute.begin_grant_access(upload.disk_id, 600, access="Write")).succeeded
    assert _finish(compute, compute.begin_revoke_access(upload.disk_id)).succeeded
    deleting = compute.begin_delete_disk(upload.disk_id, restore_id=restore_id)
    assert deleting is not None and _finish(compute, deleting).succeeded
    restore_actions = {action for method, url in transport.requests if (action := rbac_action(method, url))}

    assert exercised == public, f"ComputeClient methods this test does not call: {public - exercised}"

    doc = bicep(module_file("disk-operator"))
    role_backup = resolve(doc, variable(doc, "backupActions"))
    role_restore = resolve(doc, variable(doc, "restoreActions"))
    assert len(set(role_backup)) == len(role_backup) and len(set(role_restore)) == len(role_restore)
    assert not any("*" in action for action in role_backup + role_restore)
    assert set(role_backup) == backup_actions
    assert not set(role_backup) & set(role_restore)
    assert set(role_restore) == RESTORE_ACTIONS
    # Restore calls need nothing beyond backup's actions and the restore list, and use all of it.
    assert restore_actions - backup_actions <= RESTORE_ACTIONS
    assert RESTORE_ACTIONS - restore_actions == set()


# -- settings ------------------------------------------------------------------------------------------------


def backup_settings() -> dict[str, Any]:
    return {key.strip("'"): value for key, value in variable(bicep(MAIN), "backupSettings").items()}


def test_app_settings_are_exactly_the_apps_settings_less_the_emulators() -> None:
    names = [spec.name for spec in SETTINGS]
    assert set(NOT_IN_AZURE) <= set(names)
    assert set(backup_settings()) == set(names) - set(NOT_IN_AZURE)
    assert not set(backup_settings()) & set(variable(bicep(module_file("function-app")), "hostSettings"))


def test_required_settings_are_set_from_the_deployment() -> None:
    settings = backup_settings()
    for spec in SETTINGS:
        if spec.required:
            value = settings[spec.name]
            assert is_ref(value) or (isinstance(value, dict) and value), f"{spec.name} = {value!r}"
    assert is_ref(settings["BACKUP_SUBSCRIPTION_ID"], "disksSubscription")
    assert accessor(settings["BACKUP_MANAGED_IDENTITY_CLIENT_ID"]) == ["identity", "outputs", "clientId"]


def evaluate_settings(placeholders: Mapping[str, str]) -> dict[str, str]:
    """The app settings main.bicep writes when every parameter keeps its default.

    Deploy-time values (module outputs) come from ``placeholders``; what the expressions used here mean
    in Bicep (references, string(), the boolean ternary, interpolation-free literals) is done by hand.
    """
    main = bicep(MAIN)
    defaults = {name: param.get("default") for name, param in main["parameters"].items()}
    out: dict[str, str] = {}
    for name, value in backup_settings().items():
        if is_ref(value):
            symbol = str(value)
            if symbol in placeholders:
                out[name] = placeholders[symbol]
            else:
                default = defaults[symbol]
                assert isinstance(default, str), (name, symbol, default)
                out[name] = default
        elif isinstance(value, str):
            out[name] = value
        elif "function" in value:
            argument = function(value, "string")["value_to_convert"]
            assert is_ref(argument), (name, value)
            out[name] = str(defaults[str(argument)])
        elif value.get("operator", {}).get("type") == "conditional":
            operands = value["operator"]["operands"]
            chosen = "true_value" if defaults[str(operands["condition"])] else "false_value"
            out[name] = operands[chosen]
        else:
            accessed = ".".join(map(str, accessor(value)))
            out[name] = placeholders[accessed]
    return out


def test_settings_as_deployed_pass_the_apps_own_validation() -> None:
    env = evaluate_settings(
        {
            "disksSubscription": "00000000-0000-0000-0000-00000000abcd",
            "identity.outputs.clientId": "11111111-2222-3333-4444-555555555555",
            "backupStorage.outputs.name": "stbackupabc123",
            "backupStorage.outputs.blobEndpoint": "https://stbackupabc123.blob.core.windows.net/",
            "backupStorage.outputs.tableEndpoint": "https://stbackupabc123.table.core.windows.net/",
        }
    )
    settings = Settings.from_env(env)
    assert settings.storage_account == "stbackupabc123"
    assert settings.blob_endpoint == "https://stbackupabc123.blob.core.windows.net"
    assert settings.arm_token is None and settings.storage_key is None
    assert settings.select_tag == ("diskbackup", "enabled")  # no selection given: the app's default
    # A parameter's default is the app's own default, so a deployment without parameters behaves like
    # the documentation says.
    for spec in SETTINGS:
        if spec.default is not None and spec.name in env and spec.name != "BACKUP_SELECT_TAG":
            assert env[spec.name] == spec.default, (spec.name, env[spec.name], spec.default)


def test_numeric_parameters_have_the_apps_bounds() -> None:
    params = bicep(MAIN)["parameters"]
    bounds = {
        "maxParallel": (1, 50),
        "pollInitialSeconds": (1, 600),
        "pollMaxSeconds": (1, 3600),
        "snapshotTimeoutMinutes": (1, 1440),
        "copyTimeoutMinutes": (1, 20160),
        "sasMinutes": (5, 1440),
        "snapshotCopyTimeoutMinutes": (1, 10080),
        "alertStaleHours": (1, 8760),
        "fullCopyPercent": (1, 100),
        "verifySampleMiB": (0, 1 << 20),
        "writesPerBlob": (1, 64),
    }
    for name, (low, high) in bounds.items():
        declared = (decorator(params[name], "min_value"), decorator(params[name], "max_value"))
        assert declared == (low, high), name


# -- scale-out: the Durable Task Scheduler switch ------------------------------------------------------------


def set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def test_scheduler_switch_turns_host_json_to_the_durable_task_scheduler() -> None:
    main = bicep(MAIN)
    allowed = decorator(main["parameters"]["durableBackend"], "allowed")
    assert allowed == ["AzureStorage", "DurableTaskScheduler"]
    assert main["parameters"]["durableBackend"]["default"] == "AzureStorage"
    switch = variable(main, "schedulerSettings")["operator"]["operands"]
    assert is_ref(switch["condition"], "useScheduler") and switch["false_value"] == {}
    settings = switch["true_value"]

    # The Functions host reads AzureFunctionsJobHost__a__b as host.json's a.b: apply them to host.json.
    host = json.loads((ROOT / "host.json").read_text())
    for name, value in settings.items():
        if name.startswith("AzureFunctionsJobHost__"):
            assert name.startswith(DTS_OVERRIDE_PREFIX), name
            set_path(host, name.split("__")[1:], value)
    provider = host["extensions"]["durableTask"]["storageProvider"]
    assert provider["type"] == "azureManaged"
    connection = provider["connectionStringName"]
    assert settings[connection] == (
        "Endpoint=${scheduler.outputs.endpoint};Authentication=ManagedIdentity;"
        "ClientID=${identity.outputs.clientId}"
    )
    assert host["extensions"]["durableTask"]["hubName"] == "%BACKUP_TASK_HUB%"

    scheduler = main["modules"]["scheduler"]["config"]
    assert is_ref(scheduler["condition"], "useScheduler")
    assert is_ref(scheduler["config"]["params"]["taskHubName"], "taskHub")
    assert is_ref(backup_settings()["BACKUP_TASK_HUB"], "taskHub")

    dts = bicep(module_file("durable-task-scheduler"))
    assert is_ref(resource(dts, "taskHub")["body"]["name"], "taskHubName")
    [assignment] = role_assignments(dts)
    assert assignment["roles"] == [ROLE["Durable Task Data Contributor"]]
    assert assignment["scope"] == "taskHub"  # the one hub, not the whole scheduler


# -- the package ---------------------------------------------------------------------------------------------


def test_funcignore_leaves_infrastructure_and_tooling_out_of_the_package() -> None:
    ignored = {line.strip() for line in (ROOT / ".funcignore").read_text().splitlines()}
    assert {"infra/", "azure.yaml", ".venv/", ".venv-checkov/", "requirements-checkov.txt"} <= ignored
    assert {"tests/", "testbed/", "requirements-dev.txt"} <= ignored
    assert "function_app.py" not in ignored and "host.json" not in ignored and "backup/" not in ignored
