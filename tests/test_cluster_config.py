"""Offline checks of the cluster and cloud configuration: cluster/aws.yaml (Ray's own schema and defaults),
cluster/kuberay/*.yaml (structure), infra/terraform/*.tf (parsed with python-hcl2), version pins agreeing
everywhere, and no credential anywhere under cluster/ or infra/.

Nothing here reaches a network: Ray's ``prepare_config``/``validate_config`` only merge the AWS defaults shipped
in the wheel and check ``ray/autoscaler/ray-schema.json`` (the AWS calls live in the provider's ``bootstrap_config``,
which ``ray up`` runs and these tests do not); a guard makes any socket connection fail the test.
"""

from __future__ import annotations

import copy
import re
import shutil
import socket
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
AWS_YAML = ROOT / "cluster" / "aws.yaml"
KUBERAY = ROOT / "cluster" / "kuberay"
TERRAFORM = ROOT / "infra" / "terraform"

# Placeholders the configs use for account-specific values.
ACCOUNT = "<ACCOUNT_ID>"


# ------------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------------


def _aws() -> dict:
    return yaml.safe_load(AWS_YAML.read_text())


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]


def _one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _req_name(req: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower().replace("_", "-")


def _pin(reqs: list[str], name: str) -> str:
    """The exact ``==`` version pinned for ``name`` in a list of requirement strings."""
    for r in reqs:
        if _req_name(r) == name:
            m = re.search(r"==\s*([0-9][^,;\s]*)", r)
            assert m, f"{name} is not pinned with == in {r!r}"
            return m.group(1)
    raise AssertionError(f"{name} not found in {reqs}")


def _constraints() -> list[str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def _torch_pin() -> str:
    return _pin(_pyproject()["project"]["dependencies"], "torch")


def _ray_pin() -> str:
    return _pin(_pyproject()["project"]["dependencies"], "ray")


def _commands(cfg: dict) -> list[str]:
    cmds = list(cfg["setup_commands"]) + list(cfg["head_setup_commands"]) + list(cfg["worker_setup_commands"])
    for nt in cfg["available_node_types"].values():
        cmds += nt.get("worker_setup_commands", [])
    return cmds + list(cfg["head_start_ray_commands"]) + list(cfg["worker_start_ray_commands"])


def _images(spec: dict) -> dict[str, list[str]]:
    """Container images of a RayClusterSpec: {"head": [...], "<group>": [...]}."""
    out = {"head": [c["image"] for c in spec["headGroupSpec"]["template"]["spec"]["containers"]]}
    for g in spec["workerGroupSpecs"]:
        out[g["groupName"]] = [c["image"] for c in g["template"]["spec"]["containers"]]
    return out


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test on any attempt to open a network connection (AWS included)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# ------------------------------------------------------------------------------------------------------------------
# cluster/aws.yaml
# ------------------------------------------------------------------------------------------------------------------


def test_launcher_config_passes_rays_schema_offline(no_network):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(_aws())
    validate_config(prepared)  # ray/autoscaler/ray-schema.json + Ray's own cross-field checks
    assert prepared["provider"]["type"] == "aws"
    # The validator really checks: an unknown field in a node type is rejected.
    import jsonschema

    broken = copy.deepcopy(prepared)
    broken["available_node_types"]["head"]["not_a_field"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(broken)


def test_launcher_autoscales_cpu_and_gpu_workers_from_zero():
    cfg = _aws()
    types = cfg["available_node_types"]
    head = cfg["head_node_type"]
    workers = {k: v for k, v in types.items() if k != head}
    cpu = [k for k, v in workers.items() if not v["resources"].get("GPU")]
    gpu = [k for k, v in workers.items() if v["resources"].get("GPU")]
    assert cpu and gpu
    for name, nt in workers.items():
        assert nt.get("min_workers", 0) == 0, f"{name} must scale from zero"
        assert nt["max_workers"] >= 1
        assert nt["resources"].get("CPU", 0) >= 1, f"{name}: resources must say what it offers (scale-from-zero)"
    spot = [k for k in gpu if workers[k]["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"]
    on_demand = [k for k in gpu if "InstanceMarketOptions" not in workers[k]["node_config"]]
    assert spot and on_demand, "one spot and one on-demand GPU group"
    assert sum(nt["max_workers"] for nt in workers.values()) <= cfg["max_workers"]
    assert 0 < cfg["idle_timeout_minutes"] <= 60
    assert types[head]["resources"].get("CPU") == 0, "no tasks on the head"
    assert cfg["provider"]["cache_stopped_nodes"] is False


def test_launcher_gives_every_node_an_instance_profile():
    cfg = _aws()
    prefix = _tf_variable_default("name_prefix")
    for name, nt in cfg["available_node_types"].items():
        arn = nt["node_config"].get("IamInstanceProfile", {}).get("Arn")
        assert arn, f"{name} has no IamInstanceProfile (workers without one cannot reach S3)"
        role = "head" if name == cfg["head_node_type"] else "node"
        assert arn == f"arn:aws:iam::{ACCOUNT}:instance-profile/{prefix}-{role}", f"{name}: {arn}"


def test_launcher_keeps_dashboard_on_loopback_and_token_auth_on():
    cfg = _aws()
    head_start = " ".join(cfg["head_start_ray_commands"])
    start = [c for c in cfg["head_start_ray_commands"] if "ray start --head" in c]
    assert len(start) == 1
    assert re.findall(r"--dashboard-host[= ](\S+)", start[0]) == ["127.0.0.1"], "dashboard on loopback only"
    assert "0.0.0.0" not in head_start + " ".join(cfg["worker_start_ray_commands"])
    for cmds in (cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]):
        assert "RAY_AUTH_MODE=token" in " ".join(cmds)
    assert "RAY_AUTH_MODE=disabled" not in AWS_YAML.read_text()
    assert cfg["file_mounts"].get("/home/ubuntu/.ray/auth_token") == "~/.ray/auth_token"
    region = f"AWS_DEFAULT_REGION={cfg['provider']['region']}"
    assert region in head_start and region in " ".join(cfg["worker_start_ray_commands"])


def test_launcher_installs_the_pinned_versions():
    cfg = _aws()
    torch = _torch_pin()
    project = "pip install --quiet -c constraints.txt -e ."
    assert cfg["file_mounts"].get("/home/ubuntu/mujo-platform") == "."

    def check(cmds: list[str], cuda: bool, where: str) -> None:
        torch_i = [i for i, c in enumerate(cmds) if f"install --quiet torch=={torch}" in c]
        proj_i = [i for i, c in enumerate(cmds) if project in c]
        assert len(torch_i) == 1 and len(proj_i) == 1, where
        assert torch_i[0] < proj_i[0], f"{where}: torch first and alone, then the project"
        uses_cpu_index = "download.pytorch.org/whl/cpu" in cmds[torch_i[0]]
        assert uses_cpu_index is not cuda, f"{where}: {'CUDA' if cuda else 'CPU'} build of torch expected"
        assert "cd ~/mujo-platform" in cmds[proj_i[0]]
        assert any("python3.11 -m venv" in c for c in cmds), where
        if cuda:
            assert any("torch.cuda.is_available()" in c for c in cmds), f"{where}: no CUDA check"

    check(cfg["setup_commands"], cuda=False, where="setup_commands (head, CPU workers)")
    for name, nt in cfg["available_node_types"].items():
        if nt["resources"].get("GPU"):
            check(nt["worker_setup_commands"], cuda=True, where=name)
        else:
            assert "worker_setup_commands" not in nt, f"{name} uses the common (CPU) set-up"
    # No other version of torch or ray is installed anywhere.
    for cmd in _commands(cfg):
        for m in re.finditer(r"\b(torch|ray(?:\[[^\]]*\])?)==([0-9][^\s\"']*)", cmd):
            want = torch if m.group(1) == "torch" else _ray_pin()
            assert m.group(2) == want, cmd


# ------------------------------------------------------------------------------------------------------------------
# cluster/kuberay
# ------------------------------------------------------------------------------------------------------------------


def _check_ray_cluster_spec(spec: dict, where: str) -> None:
    ray = _ray_pin()
    assert spec["rayVersion"] == ray, where
    assert spec["enableInTreeAutoscaling"] is True, where
    assert spec.get("authOptions", {}).get("mode") == "token", f"{where}: token authentication must stay on"
    assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP", f"{where}: dashboard not public"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert {"cpu", "gpu"} <= set(groups), where
    for name, g in groups.items():
        assert g["minReplicas"] == 0 and g.get("replicas", 0) == 0, f"{where}/{name}: scale from zero"
        assert g["maxReplicas"] >= 1
    images = _images(spec)
    for group, imgs in images.items():
        for img in imgs:
            m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-(cpu|gpu|cu\d+)", img)
            assert m, f"{where}/{group}: image {img!r} is not a pinned rayproject/ray:<version>-py<xy>-<cpu|gpu> tag"
            assert m.group(1) == ray, f"{where}/{group}: {img} is not Ray {ray}"
            assert (m.group(2), m.group(3)) == ("3", "11"), f"{where}/{group}: Python 3.11 images (py311) expected"
    assert all(i.endswith("-gpu") or re.search(r"-cu\d+$", i) for i in images["gpu"]), "GPU group: GPU image"
    assert all(i.endswith("-cpu") for i in images["head"] + images["cpu"])
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(gpu_limits["nvidia.com/gpu"]) >= 1
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in groups.values()]
    assert {p.get("serviceAccountName") for p in pods} == {"mujo-ray"}, f"{where}: every pod runs as mujo-ray (IRSA)"


def _check_service_account(docs: list[dict], where: str) -> None:
    sa = _one(docs, "ServiceAccount")
    prefix = _tf_variable_default("name_prefix")
    assert sa["metadata"]["name"] == _tf_variable_default("k8s_service_account") == "mujo-ray"
    role = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role == f"arn:aws:iam::{ACCOUNT}:role/{prefix}-irsa", where


def test_kuberay_raycluster_structure():
    docs = _docs("raycluster.yaml")
    assert {d["kind"] for d in docs} == {"ServiceAccount", "RayCluster"}
    rc = _one(docs, "RayCluster")
    assert rc["apiVersion"] == "ray.io/v1"
    _check_ray_cluster_spec(rc["spec"], "raycluster.yaml")
    _check_service_account(docs, "raycluster.yaml")


def test_kuberay_rayjob_structure_and_runtime_env(monkeypatch):
    from ray.runtime_env import RuntimeEnv

    docs = _docs("rayjob.yaml")
    assert {d["kind"] for d in docs} == {"ServiceAccount", "RayJob"}
    job = _one(docs, "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    _check_ray_cluster_spec(spec["rayClusterSpec"], "rayjob.yaml")
    _check_service_account(docs, "rayjob.yaml")
    # The job's cluster is the long-lived cluster's spec, verbatim.
    assert spec["rayClusterSpec"] == _one(_docs("raycluster.yaml"), "RayCluster")["spec"]

    entry = spec["entrypoint"].split()
    assert entry[:2] == ["python", "jobs/main.py"] and entry[2] == "--config"
    assert (ROOT / entry[3]).is_file(), entry[3]
    overrides = [entry[i + 1] for i, a in enumerate(entry) if a == "--set"]
    assert "storage.root=s3://<BUCKET>/runs" in overrides
    # The overrides are valid for the job's typed configuration (placeholders filled in).
    monkeypatch.syspath_prepend(str(ROOT / "platform"))
    from mujo.config import load_config

    filled = [o.replace("<BUCKET>", "bucket").replace("<GIT_SHA>", "abc1234") for o in overrides]
    cfg = load_config(str(ROOT / entry[3]), filled)
    assert cfg.storage.root == "s3://bucket/runs" and cfg.pretrain.use_gpu

    env = yaml.safe_load(spec["runtimeEnvYAML"])
    RuntimeEnv(**env)  # Ray's own validation of the runtime_env fields (offline)
    assert set(env) <= {"working_dir", "py_modules", "pip", "env_vars"}
    assert env["working_dir"].startswith("s3://<BUCKET>/")
    allowed = {"AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"}
    assert set(env["env_vars"]) <= allowed, "env vars: storage endpoint/region only, never secrets"
    # The pods' pip list is pyproject's dependencies (Ray comes with the image) plus constraints.txt's extra pins.
    deps = [d for d in _pyproject()["project"]["dependencies"] if _req_name(d) != "ray"]
    extra = [c for c in _constraints() if _req_name(c) not in {_req_name(d) for d in deps} | {"ray"}]
    want = {_req_name(r): r.replace(" ", "") for r in extra + deps}
    constraint_pins = {_req_name(c): c.replace(" ", "") for c in _constraints() if _req_name(c) != "ray"}
    got = {_req_name(r): r.replace(" ", "") for r in env["pip"]["packages"]}
    assert set(got) == set(want), f"pip packages differ: {set(got) ^ set(want)}"
    for name, req in got.items():
        assert req in (want[name], constraint_pins.get(name)), f"{name}: {req} vs pyproject/constraints {want[name]}"


# ------------------------------------------------------------------------------------------------------------------
# versions agree everywhere
# ------------------------------------------------------------------------------------------------------------------


def test_ray_and_torch_versions_agree_everywhere():
    ray, torch = _ray_pin(), _torch_pin()
    pins = _constraints()
    assert _pin(pins, "torch") == torch and _pin(pins, "ray") == ray, "constraints.txt vs pyproject.toml"
    assert metadata.version("ray") == ray, "the venv's Ray"
    assert metadata.version("torch").split("+")[0] == torch, "the venv's torch"
    import ray as ray_module

    assert ray_module.__version__ == ray
    text = AWS_YAML.read_text()
    assert f"torch=={torch}" in text
    for name in ("raycluster.yaml", "rayjob.yaml"):
        body = (KUBERAY / name).read_text()
        versions = set(re.findall(r"rayproject/ray:(\d+\.\d+\.\d+)", body))
        assert versions == {ray}, f"{name}: images {versions}"
        assert set(re.findall(r"rayVersion:\s*\"?([0-9.]+)", body)) == {ray}
        assert set(re.findall(r"torch==(\d+(?:\.\d+)*(?:\+\w+)?)", body)) == {torch}
    # Python: pyproject allows 3.11, the nodes' venv and the images are 3.11.
    assert re.fullmatch(r">=\s*3\.11", _pyproject()["project"]["requires-python"])
    assert "python3.11" in text


# ------------------------------------------------------------------------------------------------------------------
# no credentials under cluster/ or infra/
# ------------------------------------------------------------------------------------------------------------------

_SECRET_NAMES = r"(?:aws_secret_access_key|aws_session_token|secret_access_key|secret_key)"
_LEAKS = [
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("AWS account id in an ARN", re.compile(r"arn:aws[a-z-]*:[a-z0-9-]*:[a-z0-9-]*:\d{12}:")),
    ("40-character secret", re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")),
]
_ASSIGNED = re.compile(_SECRET_NAMES + r"[\"']?\s*[:=]\s*[\"']?([^\s\"',}]+)", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"^(?:<.*>|\$.*|.*placeholder.*|local-dev.*|example.*|dummy.*|x+)$", re.IGNORECASE)


def _leaks(text: str) -> list[str]:
    found = []
    for what, pat in _LEAKS:
        for m in pat.finditer(text):
            s = m.group(0)
            if what == "40-character secret" and not all(re.search(c, s) for c in ("[A-Z]", "[a-z]", "[0-9]")):
                continue  # hex digests and words are not secrets (a secret key mixes all three)
            found.append(f"{what}: {s[:8]}...")
    for m in _ASSIGNED.finditer(text):
        value = m.group(1)
        if re.match(r"[A-Za-z_][\w.]*[\[(]", value):
            continue  # a reference in code (LOCAL_ENV["..."], os.environ.get(...)), not a literal
        if not _PLACEHOLDER.match(value):
            found.append(f"secret assignment: {m.group(0)[:30]}...")
    return found


def test_the_credential_detector_detects():
    key_id = "AKIA" + "Q" * 12 + "7ABC"
    secret = "wJalrXUtnFEMI" + "/K7MDENG/bPxRfiCY" + "Abcdef1234"
    assert _leaks(f"aws_access_key_id = {key_id}")
    assert _leaks(f"aws_secret_access_key = {secret}")
    assert _leaks(f'"AWS_SECRET_ACCESS_KEY": "{secret}"')
    assert _leaks("role_arn = arn:aws:iam::" + "123456789012" + ":role/x")
    assert not _leaks("aws_secret_access_key = <YOUR_SECRET>")
    assert not _leaks('"AWS_SECRET_ACCESS_KEY": "local-dev-placeholder"')
    assert not _leaks("arn:aws:iam::<ACCOUNT_ID>:role/mujo-ray-irsa")
    assert not _leaks("commit 0123456789abcdef0123456789abcdef01234567")
    assert not _leaks('boto3.client("s3", aws_secret_access_key=LOCAL_ENV["AWS_SECRET_ACCESS_KEY"])')


def test_no_credentials_under_cluster_or_infra():
    # Terraform's local working files (.terraform/, state) are never committed (infra/README.md) and are skipped.
    files = [p for d in ("cluster", "infra") for p in (ROOT / d).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and ".terraform" not in p.parts
             and ".tfstate" not in p.name]
    files += [ROOT / "docs" / "cluster.md"]
    assert any(p.suffix == ".tf" for p in files) and AWS_YAML in files
    problems = {str(p.relative_to(ROOT)): _leaks(p.read_text(errors="replace")) for p in files}
    assert not {k: v for k, v in problems.items() if v}
    assert not any(p.name in {"credentials", ".env"} for p in files)


# ------------------------------------------------------------------------------------------------------------------
# infra/terraform
# ------------------------------------------------------------------------------------------------------------------


def _tf() -> dict:
    """All .tf files merged: {"resource": {type: {name: body}}, "data": {...}, "variable": {...}, "output": {...}}."""
    hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 (dev extra) parses the Terraform files")
    opts = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True,
                                     preserve_heredocs=False)
    out: dict = {"resource": {}, "data": {}, "variable": {}, "output": {}, "locals": {}, "terraform": [],
                 "provider": []}
    for path in sorted(TERRAFORM.glob("*.tf")):
        doc = hcl2.loads(path.read_text(), serialization_options=opts)
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        assert name not in out[kind].setdefault(rtype, {}), f"duplicate {rtype}.{name}"
                        out[kind][rtype][name] = body
        for kind in ("variable", "output"):
            for block in doc.get(kind, []):
                out[kind].update(block)
        for block in doc.get("locals", []):
            out["locals"].update(block)
        out["terraform"] += doc.get("terraform", [])
        out["provider"] += doc.get("provider", [])
    return out


def _tf_variable_default(name: str):
    """A variable's default, read with a plain pattern (python-hcl2 not needed for the cross-file checks)."""
    text = (TERRAFORM / "variables.tf").read_text()
    m = re.search(r'variable\s+"' + re.escape(name) + r'"\s*\{(.*?)\n\}', text, re.DOTALL)
    assert m, f"variable {name} missing"
    d = re.search(r'^\s*default\s*=\s*"([^"]*)"', m.group(1), re.MULTILINE)
    assert d, f"variable {name} has no string default"
    return d.group(1)


def _statements(doc: dict) -> list[dict]:
    """Statements of an aws_iam_policy_document, dynamic ones included."""
    stmts = list(doc.get("statement", []))
    for dyn in doc.get("dynamic", []):
        stmts += dyn.get("statement", {}).get("content", [])
    return stmts


def test_terraform_files_are_formatted_and_structurally_sound():
    names = {p.name for p in TERRAFORM.glob("*.tf")}
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= names
    for p in TERRAFORM.glob("*.tf"):  # minimal check that needs no parser
        text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', p.read_text())
        text = re.sub(r"#.*", "", text)
        assert text.count("{") == text.count("}"), p.name
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform not installed: fmt check skipped (validate needs the AWS provider download anyway)")
    res = subprocess.run([terraform, "fmt", "-check", "-recursive", str(TERRAFORM)], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, f"terraform fmt -check: {res.stdout}{res.stderr}"


def test_terraform_bucket_is_versioned_encrypted_private_with_lifecycle():
    tf = _tf()
    res = tf["resource"]
    bucket = "${aws_s3_bucket.data.id}"
    assert "data" in res["aws_s3_bucket"]

    ver = res["aws_s3_bucket_versioning"]["data"]
    assert ver["bucket"] == bucket and ver["versioning_configuration"][0]["status"] == "Enabled"

    sse = res["aws_s3_bucket_server_side_encryption_configuration"]["data"]
    algo = sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"]
    assert sse["bucket"] == bucket and ("AES256" in algo or "aws:kms" in algo)

    pab = res["aws_s3_bucket_public_access_block"]["data"]
    assert pab["bucket"] == bucket
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert pab[flag] is True, flag

    lc = res["aws_s3_bucket_lifecycle_configuration"]["data"]
    assert lc["bucket"] == bucket
    rules = list(lc.get("rule", [])) + [d["rule"]["content"][0] for d in lc.get("dynamic", []) if "rule" in d]
    assert all(r["status"] == "Enabled" for r in rules)
    noncurrent = [r for r in rules if "noncurrent_version_expiration" in r]
    assert noncurrent and noncurrent[0]["filter"] == [{}], "noncurrent versions expire bucket-wide"
    assert noncurrent[0]["noncurrent_version_expiration"][0]["noncurrent_days"] == \
        "${var.noncurrent_version_expiration_days}"
    ckpt = [r for r in rules if r.get("filter", [{}])[0].get("prefix", "").endswith("/train/")]
    assert ckpt, "a rule expiring checkpoints under runs/<run>/train/"
    assert ckpt[0]["filter"][0]["prefix"] == "${var.runs_prefix}/${rule.value}/train/"
    assert ckpt[0]["expiration"][0]["days"] == "${var.checkpoint_expiration_days}"
    assert "*" not in ckpt[0]["filter"][0]["prefix"], "S3 lifecycle prefixes are literal"
    assert _tf_variable_default("runs_prefix") == "runs"

    policy = tf["data"]["aws_iam_policy_document"]["bucket_policy"]
    deny = [s for s in _statements(policy) if s.get("effect") == "Deny"]
    assert deny and deny[0]["condition"][0]["variable"] == "aws:SecureTransport"


def test_terraform_roles_are_scoped_to_the_bucket():
    tf = _tf()
    docs = tf["data"]["aws_iam_policy_document"]
    bucket_arns = {"${local.bucket_arn}", "${local.bucket_arn}/*", "${aws_s3_bucket.data.arn}",
                   "${aws_s3_bucket.data.arn}/*"}
    for name, doc in docs.items():
        for st in _statements(doc):
            actions = st.get("actions", [])
            if any(a.lower().startswith("s3:") for a in actions):
                assert st.get("resources"), f"{name}/{st.get('sid')}: s3 actions without resources"
                assert "*" not in st["resources"], f"{name}/{st.get('sid')}: s3 actions on Resource *"
                assert set(st["resources"]) <= bucket_arns, f"{name}/{st.get('sid')}: {st['resources']}"

    access = {a for st in _statements(docs["bucket_access"]) for a in st["actions"]}
    assert {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= access
    assert not any(a in {"s3:*", "*"} for a in access)
    by_sid = {st["sid"]: st for st in _statements(docs["bucket_access"])}
    assert by_sid["ListTheBucket"]["resources"] == ["${local.bucket_arn}"]
    assert by_sid["ReadWriteObjects"]["resources"] == ["${local.bucket_arn}/*"]
    assert tf["locals"]["bucket_arn"] == "${aws_s3_bucket.data.arn}"

    res = tf["resource"]
    # Worker nodes: the bucket policy only. Head: the bucket policy plus the autoscaler's.
    attached = {v["role"]: v["policy_arn"] for v in res["aws_iam_role_policy_attachment"].values()}
    assert attached == {"${aws_iam_role.node.name}": "${aws_iam_policy.bucket_access.arn}",
                        "${aws_iam_role.head.name}": "${aws_iam_policy.bucket_access.arn}",
                        "${aws_iam_role.irsa[0].name}": "${aws_iam_policy.bucket_access.arn}"}
    inline = res["aws_iam_role_policy"]
    assert {v["role"] for v in inline.values()} == {"${aws_iam_role.head.id}"}, "only the head has extra rights"
    assert inline["head_autoscaler"]["policy"] == "${data.aws_iam_policy_document.autoscaler.json}"

    auto = {st["sid"]: st for st in _statements(docs["autoscaler"])}
    actions = {a for st in auto.values() for a in st["actions"]}
    assert {"ec2:RunInstances", "ec2:TerminateInstances", "ec2:CreateTags", "ec2:DescribeInstances",
            "iam:PassRole"} <= actions
    assert not any(a.startswith("s3:") or a.endswith(":*") or a == "*" for a in actions)
    assert auto["PassOnlyTheNodeRole"]["actions"] == ["iam:PassRole"]
    assert auto["PassOnlyTheNodeRole"]["resources"] == ["${aws_iam_role.node.arn}"]
    terminate = [st for st in auto.values() if "ec2:TerminateInstances" in st["actions"]]
    assert len(terminate) == 1 and terminate[0]["condition"][0]["variable"] == "ec2:ResourceTag/ray-cluster-name"
    assert terminate[0]["condition"][0]["values"] == ["${var.cluster_name}"]
    assert _tf_variable_default("cluster_name") == _aws()["cluster_name"]
    assert _tf_variable_default("region") == _aws()["provider"]["region"]

    # Instance profiles for the head and the workers; the names cluster/aws.yaml uses.
    profiles = res["aws_iam_instance_profile"]
    assert profiles["head"]["role"] == "${aws_iam_role.head.name}"
    assert profiles["node"]["role"] == "${aws_iam_role.node.name}"
    assert profiles["head"]["name"] == "${var.name_prefix}-head" and profiles["node"]["name"] == "${var.name_prefix}-node"
    assert res["aws_iam_role"]["node"]["assume_role_policy"] == "${data.aws_iam_policy_document.ec2_assume.json}"

    # IRSA (optional): web identity, bound to the service account of cluster/kuberay.
    irsa = res["aws_iam_role"]["irsa"]
    assert irsa["count"] == "${local.create_irsa ? 1 : 0}" and irsa["name"] == "${var.name_prefix}-irsa"
    trust = _statements(docs["irsa_assume"])[0]
    assert trust["actions"] == ["sts:AssumeRoleWithWebIdentity"]
    sub = [c for c in trust["condition"] if c["variable"].endswith(":sub")][0]
    assert sub["values"] == ["system:serviceaccount:${var.k8s_namespace}:${var.k8s_service_account}"]
    assert {"eks_oidc_provider_arn", "eks_oidc_issuer_url"} <= set(tf["variable"])

    outputs = tf["output"]
    assert {"bucket_name", "head_instance_profile_arn", "node_instance_profile_arn", "irsa_role_arn"} <= set(outputs)
    assert outputs["head_instance_profile_arn"]["value"] == "${aws_iam_instance_profile.head.arn}"
    assert outputs["node_instance_profile_arn"]["value"] == "${aws_iam_instance_profile.node.arn}"


# ------------------------------------------------------------------------------------------------------------------
# docs
# ------------------------------------------------------------------------------------------------------------------


def test_cluster_docs_cover_the_commands():
    doc = (ROOT / "docs" / "cluster.md").read_text()
    for needle in ("ray up cluster/aws.yaml", "ray dashboard cluster/aws.yaml", "ray job submit", "--working-dir .",
                   "RAY_AUTH_MODE=token", "tensorboard --logdir s3://", "kubectl apply -f cluster/kuberay/",
                   "Cost and scaling", "ray down cluster/aws.yaml"):
        assert needle in doc, needle
    readme = (ROOT / "infra" / "README.md").read_text()
    assert "terraform apply" in readme and "local_s3.py" in readme
