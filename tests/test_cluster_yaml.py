"""cluster.yaml and the GCP variant in docs/cluster.md: Ray 2.60's own config checks plus raysweep's cluster rules.

Everything here is offline: the JSON schema shipped inside the installed ray package, Ray's private
`prepare_config` / `validate_config` (skipped if they move), and static checks of the commands the nodes run.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
CLUSTER_DOC = REPO / "docs" / "cluster.md"
DRIVER_RESOURCE = "sweep_driver"  # the custom resource that trial drivers request (raysweep.sweep.driver)
TOKEN_PATH = "~/.ray/auth_token"
# (vCPUs, GPUs) of the machine types the files use: declared resources must match the hardware.
KNOWN_MACHINES = {
    "m6i.2xlarge": (8, 0), "g5.xlarge": (4, 1), "g5.2xlarge": (8, 1), "g5.48xlarge": (192, 8),
    "p4d.24xlarge": (96, 8), "n2-standard-8": (8, 0), "n1-standard-8": (8, 1), "a2-highgpu-8g": (96, 8),
}
# Ports that must never be reachable from outside the cluster: GCS, dashboard, Ray Client.
PRIVATE_PORTS = (6379, 8265, 10001)
COMMAND_LISTS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                 "head_start_ray_commands", "worker_start_ray_commands")
BASH = shutil.which("bash")


# ---------------------------------------------------------------------------------------------------------------
# loading
def load_aws() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def fenced_blocks(text: str, info: str) -> list[str]:
    """Bodies of the ``` blocks whose info string is exactly `info` (e.g. 'yaml gcp')."""
    pattern = re.compile(r"^```" + re.escape(info) + r"[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
    return pattern.findall(text)


def load_gcp() -> dict[str, Any]:
    """cluster.yaml with the top-level sections that the doc's ```yaml gcp block replaces."""
    blocks = fenced_blocks(CLUSTER_DOC.read_text(), "yaml gcp")
    assert len(blocks) == 1, f"docs/cluster.md must hold exactly one ```yaml gcp block, found {len(blocks)}"
    return {**load_aws(), **yaml.safe_load(blocks[0])}


@pytest.fixture(params=["aws", "gcp"])
def config(request) -> dict[str, Any]:
    return load_aws() if request.param == "aws" else load_gcp()


def ray_schema() -> dict[str, Any]:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def commands(config: dict[str, Any], key: str) -> list[str]:
    return list(config.get(key) or [])


def worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: t for name, t in config["available_node_types"].items() if name != config["head_node_type"]}


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# ---------------------------------------------------------------------------------------------------------------
# Ray's own validation
def test_config_matches_rays_json_schema(config):
    schema = ray_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_schema_check_rejects_what_ray_rejects():
    """The schema check has teeth: fractional resources and unknown node-type keys fail, as in `ray up`."""
    validator = jsonschema.Draft7Validator(ray_schema())
    fractional = load_aws()
    fractional["available_node_types"]["gpu_x1_spot"]["resources"]["GPU"] = 0.5
    assert any(e.validator == "type" for e in validator.iter_errors(fractional))
    unknown = load_aws()
    unknown["available_node_types"]["head"]["resource"] = {"CPU": 8}
    assert any(e.validator == "additionalProperties" for e in validator.iter_errors(unknown))


def test_rays_prepare_and_validate_config_accept_it(config):
    """What `ray up` runs before talking to the cloud: merge with the provider defaults, then validate."""
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError:
        pytest.skip("ray.autoscaler._private.util.prepare_config/validate_config moved in this Ray version")
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert (head["min_workers"], head["max_workers"]) == (0, 0)
    # The common setup runs before the head's own (boto3 / Google API client) and before the workers'.
    n_common = len(config["setup_commands"])
    assert prepared["head_setup_commands"][:n_common] == config["setup_commands"]
    assert prepared["head_setup_commands"][n_common:] == config["head_setup_commands"]
    assert prepared["worker_setup_commands"] == config["setup_commands"]
    # Our start commands replace the provider defaults rather than being merged with them.
    assert prepared["head_start_ray_commands"] == config["head_start_ray_commands"]


# ---------------------------------------------------------------------------------------------------------------
# node types: drivers on the head, GPUs on spot workers
def test_sweep_driver_slots_exist_only_on_the_head(config):
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"][DRIVER_RESOURCE] == 8
    assert head["resources"]["CPU"] >= 1 and head["resources"].get("GPU", 0) == 0
    for name, node_type in worker_types(config).items():
        assert DRIVER_RESOURCE not in node_type["resources"], f"{name} would host trial drivers on a spot node"


def test_head_is_on_demand_and_workers_are_spot_and_scale_from_zero(config):
    head = config["available_node_types"][config["head_node_type"]]["node_config"]
    assert "InstanceMarketOptions" not in head and "scheduling" not in head
    for name, node_type in worker_types(config).items():
        assert node_type["min_workers"] == 0, name
        assert node_type["max_workers"] >= 1, name
        node_config = node_type["node_config"]
        if config["provider"]["type"] == "aws":
            assert node_config["InstanceMarketOptions"]["MarketType"] == "spot", name
        else:
            assert node_config["scheduling"]["provisioningModel"] == "SPOT", name
            assert node_config["scheduling"]["onHostMaintenance"] == "TERMINATE", name  # required with GPUs


def test_gpu_worker_types_declare_gpus_matching_their_hardware(config):
    gpu_counts = []
    for name, node_type in worker_types(config).items():
        resources = node_type["resources"]
        assert isinstance(resources.get("GPU"), int) and resources["GPU"] >= 1, f"{name}: GPU must be explicit"
        assert isinstance(resources.get("CPU"), int) and resources["CPU"] >= 1, f"{name}: CPU must be explicit"
        node_config = node_type["node_config"]
        machine = node_config.get("InstanceType") or node_config.get("machineType")
        if machine in KNOWN_MACHINES:
            assert (resources["CPU"], resources["GPU"]) == KNOWN_MACHINES[machine], f"{name}: {machine}"
        attached = sum(a["acceleratorCount"] for a in node_config.get("guestAccelerators", []))
        if attached:
            assert attached == resources["GPU"], f"{name}: guestAccelerators vs resources.GPU"
        gpu_counts.append(resources["GPU"])
    assert sorted(gpu_counts) == [1, 8]  # one type for DEFR-size trials, one for paper-size trials
    head = config["available_node_types"][config["head_node_type"]]
    head_machine = head["node_config"].get("InstanceType") or head["node_config"].get("machineType")
    assert head["resources"]["CPU"] == KNOWN_MACHINES[head_machine][0]


def test_multi_gpu_trials_cannot_be_spread_over_single_gpu_nodes():
    """docs/cluster.md's rule: 8 workers × cpus_per_worker 8 fit the 8-GPU type only (AWS)."""
    types = worker_types(load_aws())
    single = next(t["resources"] for t in types.values() if t["resources"]["GPU"] == 1)
    eight = next(t["resources"] for t in types.values() if t["resources"]["GPU"] == 8)
    cpus_per_worker = 8
    assert cpus_per_worker > single["CPU"]
    assert 8 * cpus_per_worker <= eight["CPU"]


def test_gcp_variant_names_a_project():
    provider = load_gcp()["provider"]
    assert isinstance(provider["project_id"], str) and provider["project_id"].strip()
    for name, node_type in worker_types(load_gcp()).items():
        emails = [a["email"] for a in node_type["node_config"].get("serviceAccounts", [])]
        assert all(provider["project_id"] in email for email in emails), name


# ---------------------------------------------------------------------------------------------------------------
# security
def ingress_problems(rule: dict[str, Any]) -> list[str]:
    """Why an EC2 ingress rule is not allowed: open to the internet beyond SSH, or a Ray port open to addresses."""
    cidrs = [r.get("CidrIp") for r in rule.get("IpRanges", [])]
    cidrs += [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
    if rule.get("IpProtocol") == "-1":
        ports = range(0, 65536)
    else:
        ports = range(int(rule.get("FromPort", -1)), int(rule.get("ToPort", -1)) + 1)
    problems = []
    if any(c in ("0.0.0.0/0", "::/0") for c in cidrs) and (rule.get("FromPort"), rule.get("ToPort")) != (22, 22):
        problems.append("open to the internet beyond SSH")
    if cidrs and any(p in ports for p in PRIVATE_PORTS):
        problems.append("opens a Ray port to addresses")
    return problems


def test_ingress_checker_allows_ssh_only():
    world = [{"CidrIp": "0.0.0.0/0"}]
    assert ingress_problems({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": world}) == []
    assert ingress_problems({"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-1"}]}) == []
    assert ingress_problems({"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265, "IpRanges": world}) == [
        "open to the internet beyond SSH", "opens a Ray port to addresses"]
    assert ingress_problems({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}) == [
        "opens a Ray port to addresses"]
    assert ingress_problems({"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                             "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}) == ["open to the internet beyond SSH"]


def test_no_ingress_from_anywhere_except_ssh(config):
    if config["provider"]["type"] == "aws":
        assert config["provider"]["security_group"]["IpPermissions"] == []  # Ray adds only intra-group + SSH
    for rule in (node for node in walk(config) if isinstance(node, dict) and "IpProtocol" in node):
        assert ingress_problems(rule) == [], rule
    # GCP firewall-style keys must not appear either (the variant relies on the default network's rules).
    assert not any(isinstance(n, dict) and "sourceRanges" in n for n in walk(config))


def test_token_file_is_mounted_on_every_node(config):
    assert config["file_mounts"][TOKEN_PATH] == TOKEN_PATH


@pytest.mark.parametrize("key, start", [("head_start_ray_commands", "ray start --head"),
                                        ("worker_start_ray_commands", "ray start --address")])
def test_ray_starts_in_token_auth_mode(config, key, start):
    starting = [cmd for cmd in commands(config, key) if start in cmd]
    assert len(starting) == 1, f"{key}: expected one `{start}` command"
    cmd = starting[0]
    assert "export RAY_AUTH_MODE=token" in cmd
    assert cmd.index("export RAY_AUTH_MODE=token") < cmd.index(start)


def test_no_credentials_in_config_or_doc():
    key_id = re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b")
    for path in (CLUSTER_YAML, CLUSTER_DOC):
        text = path.read_text()
        assert not key_id.search(text), f"{path.name}: looks like an AWS access key id"
        lowered = text.lower()
        for word in ("aws_secret_access_key", "aws_session_token", "private key-----", '"private_key"',
                     "ssh_private_key:"):
            assert word not in lowered, f"{path.name}: contains {word!r}"


# ---------------------------------------------------------------------------------------------------------------
# what the nodes install and run
def test_ray_pin_equals_the_installed_ray(config):
    text = "\n".join(cmd for key in COMMAND_LISTS for cmd in commands(config, key))
    pins = re.findall(r"ray\[([a-z,]+)\]==([0-9][0-9A-Za-z.]*)", text)
    assert len(pins) == 1, f"expected one pinned ray install, found {pins}"
    extras, version = pins[0]
    assert version == ray.__version__
    pyproject = REPO / "pyproject.toml"
    if pyproject.exists():  # the nodes must get the Ray that raysweep itself declares
        import tomllib

        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
        declared = [d for d in deps if re.match(r"ray\[", d)]
        assert declared == [f"ray[{extras}]=={version}"], declared
    assert {"default", "train", "tune"} <= set(extras.split(","))
    assert "ray-wheels" not in text and "pip install -U ray" not in text  # nothing that installs another Ray


def test_raysweep_commit_is_set_in_one_place():
    setup = "\n".join(load_aws()["setup_commands"])
    assert len(re.findall(r"^\s*RAYSWEEP_COMMIT=", setup, re.MULTILINE)) == 1
    assert len(re.findall(r"^\s*RAYSWEEP_REPO=", setup, re.MULTILINE)) == 1
    assert 'RAYSWEEP_SPEC="raysweep @ git+${RAYSWEEP_REPO}@${RAYSWEEP_COMMIT}"' in setup


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_every_node_command_is_valid_bash(config):
    for key in COMMAND_LISTS:
        for cmd in commands(config, key):
            # Ray runs each command as `bash --login -c -i "source ~/.bashrc; export ... && (cmd)"`.
            proc = subprocess.run([BASH, "-n", "-c", f"({cmd})"], capture_output=True, text=True)
            assert proc.returncode == 0, f"{key}: {proc.stderr.strip()}\n{cmd}"


def _run_on_fake_home(cmd: str, home: Path) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([BASH, "-c", f"({cmd})"], capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_setup_stops_before_installing_while_the_commit_is_a_placeholder(tmp_path):
    install = load_aws()["setup_commands"][0]
    if "REPLACE_WITH_COMMIT_SHA" not in install:
        pytest.skip("cluster.yaml names a real commit: running its install step would download packages")
    proc = _run_on_fake_home(install, tmp_path)
    assert proc.returncode == 1
    assert "set RAYSWEEP_REPO and RAYSWEEP_COMMIT" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing downloaded, no venv made


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_profile_step_is_idempotent_and_locks_the_token(tmp_path):
    profile = load_aws()["setup_commands"][1]
    (tmp_path / ".bashrc").write_text("# stock bashrc\n")
    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("secret")
    token.chmod(0o644)
    for _ in range(2):  # `ray up` re-runs setup on every update
        proc = _run_on_fake_home(profile, tmp_path)
        assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / ".bashrc").read_text().splitlines()
    assert lines.count("source ~/raysweep-venv/bin/activate") == 1
    assert lines.count("export RAY_AUTH_MODE=token") == 1
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


def test_local_mount_sources_exist_relative_to_the_repo_root():
    """`ray up cluster.yaml` runs from the repository root; every relative mount must be there."""
    for remote, local in load_aws()["file_mounts"].items():
        if local.startswith("~"):
            continue
        assert (REPO / local).exists(), f"file_mounts {remote}: {local} is missing in the repository"


def test_every_yaml_block_in_the_doc_parses():
    text = CLUSTER_DOC.read_text()
    blocks = fenced_blocks(text, "yaml") + fenced_blocks(text, "yaml gcp")
    assert len(blocks) >= 3
    for block in blocks:
        assert isinstance(yaml.safe_load(block), dict)


# ---------------------------------------------------------------------------------------------------------------
# least privilege and pinned downloads
AUTOSCALER_IDENTITIES = ("ray-autoscaler-v1", "ray-autoscaler-sa-v1")
WORKER_IDENTITY = "raysweep-gpu-worker"
CONSTRAINTS = REPO / "cluster_constraints.txt"


def test_gpu_workers_get_their_own_narrow_identity(config):
    """Workers never get the autoscaler's role (EC2 full access / cloud-platform scope), only the worker identity."""
    head = config["head_node_type"]
    for name, node_type in config["available_node_types"].items():
        if name == head:
            continue
        node = node_type["node_config"]
        profile = node.get("IamInstanceProfile", {}).get("Name")
        accounts = [a["email"].split("@")[0] for a in node.get("serviceAccounts", [])]
        scopes = [s for a in node.get("serviceAccounts", []) for s in a.get("scopes", [])]
        assert (profile or (accounts[0] if accounts else None)) == WORKER_IDENTITY, name
        assert not any(i in (profile, *accounts) for i in AUTOSCALER_IDENTITIES), name
        assert all(s.endswith("/devstorage.read_write") for s in scopes), (name, scopes)


def _policy_document(text: str, role: str) -> dict:
    """The JSON of `aws iam put-role-policy --role-name ROLE ... --policy-document '...'` in the doc, with the shell
    variables it splices in set to B (bucket), P (prefix) and A (account)."""
    start = text.index(f"put-role-policy --role-name {role} ")
    body = text[text.index("--policy-document '", start) + len("--policy-document '"):]
    for variable, value in (("$BUCKET/$PREFIX", "B/P"), ("$BUCKET", "B"), ("$PREFIX", "P"), ("$ACCOUNT", "A")):
        body = body.replace(f"'\"{variable}\"'", value)
    return json.loads(body[:body.index("'")].replace("\\\n", ""))


def test_worker_role_policy_allows_s3_on_the_prefix_only():
    """The worker role may use S3 under the results prefix (and read the datasets prefix), nothing else; the head
    may pass exactly that role."""
    text = CLUSTER_DOC.read_text()
    worker = _policy_document(text, "raysweep-gpu-worker")
    for statement in worker["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert statement["Effect"] == "Allow" and all(a.startswith("s3:") and "*" not in a for a in actions)
        if actions == ["s3:ListBucket"]:
            assert statement["Resource"] == "arn:aws:s3:::B"
            assert set(statement["Condition"]["StringLike"]["s3:prefix"]) <= {"P/*", "P", "datasets/*"}
        elif statement["Resource"] != "arn:aws:s3:::B/P/*":
            assert statement["Resource"] == "arn:aws:s3:::B/datasets/*" and actions == ["s3:GetObject"]
    head = _policy_document(text, "ray-autoscaler-v1")
    passed = [s["Resource"] for s in head["Statement"] if s["Action"] == "iam:PassRole"]
    assert passed == ["arn:aws:iam::A:role/raysweep-gpu-worker"]


def _setup_text() -> str:
    return "\n".join(load_aws()["setup_commands"] + load_aws()["head_setup_commands"])


def test_uv_download_is_pinned_and_hash_checked():
    setup = _setup_text()
    assert not re.search(r"\|\s*(sh|bash)\b", setup) and "install.sh" not in setup  # no piped installer
    version = re.search(r'^\s*UV_VERSION="([0-9.]+)"$', setup, re.MULTILINE)
    digest = re.search(r'^\s*UV_SHA256="([0-9a-f]{64})"$', setup, re.MULTILINE)
    assert version and digest
    assert "sha256sum --check --strict" in setup
    assert setup.index("sha256sum --check") < setup.index("chmod 755 ~/.local/bin/uv")  # checked before it can run
    assert re.search(r"curl [^\n]*--proto '=https'[^\n]*https://files\.pythonhosted\.org/", setup)


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_a_tampered_uv_download_stops_setup(tmp_path):
    """The checking lines of setup, run on a file whose hash differs, stop before the file is unpacked."""
    setup = load_aws()["setup_commands"][0]
    digest = re.search(r'UV_SHA256="([0-9a-f]{64})"', setup).group(1)
    wheel = tmp_path / "uv.whl"
    wheel.write_bytes(b"not the wheel")
    check = f'set -euo pipefail; echo "{digest}  {wheel}" | sha256sum --check --strict - && touch {tmp_path}/ran'
    proc = subprocess.run([BASH, "-c", check], capture_output=True, text=True)
    assert proc.returncode != 0 and not (tmp_path / "ran").exists()


def test_every_package_install_uses_the_constraints_file():
    installs = re.findall(r"uv pip install[^\n]*(?:\\\n[^\n]*)*", _setup_text())
    assert installs
    for line in installs:
        assert "-c ~/raysweep/cluster_constraints.txt" in line, line
    assert load_aws()["file_mounts"]["~/raysweep/cluster_constraints.txt"] == "./cluster_constraints.txt"


def test_constraints_pin_every_package_and_the_same_ray():
    pins = [line for line in CONSTRAINTS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(pins) > 50
    malformed = [line for line in pins if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*==[0-9][0-9A-Za-z.!-]*", line)]
    assert malformed == []
    versions = dict(line.split("==") for line in pins)
    assert versions["ray"] == ray.__version__
    assert re.search(rf'RAY_PIN="ray\[[a-z,]+\]=={re.escape(versions["ray"])}"', _setup_text())
    for needed in ("torch", "optuna", "pyarrow", "pydantic", "boto3"):
        assert needed in versions, needed
