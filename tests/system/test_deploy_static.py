"""Static checks of the deployment files: Dockerfile, compose, systemd, Kubernetes.

No container engine or cluster is needed: every file is parsed and checked for
the properties the deployment relies on (service names, ports, users, probes,
health checks, grace periods that agree across compose, systemd and
Kubernetes, variables that the example env files define). Where the tools are
installed, `docker compose config`, `systemd-analyze verify` and
`kubectl kustomize` run too; without them those checks are skipped, the
parsing checks always run.

Environment: VB_SOURCE_DIR = repository root (set by CTest; defaults to the
checkout this file lives in).
"""

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

try:
    import yaml
except ImportError:  # Debian's python3-yaml, seen from another interpreter
    sys.path.append("/usr/lib/python3/dist-packages")
    import yaml

ROOT = os.path.abspath(
    os.environ.get("VB_SOURCE_DIR")
    or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
)


def path(*parts):
    return os.path.join(ROOT, *parts)


def read(*parts):
    with open(path(*parts), encoding="utf-8") as f:
        return f.read()


def load_yaml_docs(*parts):
    return [d for d in yaml.safe_load_all(read(*parts)) if d is not None]


def load_yaml(*parts):
    docs = load_yaml_docs(*parts)
    if len(docs) != 1:
        raise AssertionError("%s: expected one YAML document, got %d" % (os.path.join(*parts), len(docs)))
    return docs[0]


def parse_env_file(*parts):
    """KEY=value lines of an env file (comments and blanks skipped)."""
    env = {}
    for n, line in enumerate(read(*parts).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if not m:
            raise AssertionError("%s:%d: not KEY=value: %r" % (os.path.join(*parts), n, line))
        env[m.group(1)] = m.group(2)
    return env


def duration_seconds(text):
    """'90s', '1m30s', '90' → 90."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    total = 0
    for value, unit in re.findall(r"(\d+)\s*(ms|min|h|m|s)", text):
        total += int(value) * {"h": 3600, "m": 60, "min": 60, "s": 1, "ms": 0.001}[unit]
    if total == 0:
        raise AssertionError("cannot read duration %r" % text)
    return total


def cmake_programs():
    """Executables the build installs: vb_program(<name> <library> <dir>) in CMakeLists.txt."""
    return set(re.findall(r"^\s*vb_program\(\s*([\w-]+)\s+\w+\s+\w+\s*\)", read("CMakeLists.txt"), re.M))


# Settings every deployment must be able to carry (SPEC.md §5, §6).
SPEC_ENV = [
    "EXTERNAL_API_GET_URL", "EXTERNAL_API_POST_URL", "EXTERNAL_API_KEY", "BACKEND_API_URL",
    "ORGANIZATION_ID", "KAFKA_BROKERS", "REDIS_URL", "VISIONBATCH_API_TOKEN",
    "VISIONBATCH_SECRET_KEY", "VISIONBATCH_CONCURRENCY",
]
SECRET_ENV = ["EXTERNAL_API_KEY", "VISIONBATCH_API_TOKEN", "VISIONBATCH_SECRET_KEY"]
TOPIC = "visionbatch.runs"
DLQ = "visionbatch.runs.dlq"
GROUP = "visionbatch-workers"
PRODUCER_PORT = 8000
WORKER_PORT = 9101
# The worker's in-process shutdown grace and the margin the orchestrators add.
GRACE_MARGIN_S = 30


def shutdown_grace(env):
    return int(env.get("VISIONBATCH_SHUTDOWN_GRACE_S", "60"))


class YamlFiles(unittest.TestCase):
    def test_every_yaml_file_parses(self):
        found = []
        for top in ("docker", "deploy"):
            for dirpath, dirnames, filenames in os.walk(path(top)):
                dirnames[:] = [d for d in dirnames if d not in ("var", ".git")]
                for name in filenames:
                    if name.endswith((".yaml", ".yml")):
                        full = os.path.join(dirpath, name)
                        with open(full, encoding="utf-8") as f:
                            try:
                                list(yaml.safe_load_all(f))
                            except yaml.YAMLError as e:
                                self.fail("%s does not parse: %s" % (full, e))
                        found.append(full)
        self.assertGreaterEqual(len(found), 8, found)


# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------


def dockerfile_instructions(text):
    """[(INSTRUCTION, args)] with continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    if buf:
        raise AssertionError("Dockerfile ends inside a continued line")
    return out


def dockerfile_stages(instructions):
    """{stage name: {'from': base, 'ins': [(INSTR, args)]}} in file order."""
    stages, order, cur = {}, [], None
    for ins, args in instructions:
        if ins == "FROM":
            m = re.match(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", args, re.I)
            if not m:
                raise AssertionError("bad FROM: %r" % args)
            cur = m.group(2) or "stage%d" % len(order)
            stages[cur] = {"from": m.group(1), "ins": []}
            order.append(cur)
        elif cur is None:
            if ins != "ARG":
                raise AssertionError("%s before the first FROM" % ins)
        else:
            stages[cur]["ins"].append((ins, args))
    return stages, order


def stage_chain(stages, name):
    """Stages from the root base to `name` (a stage may be FROM another)."""
    chain = []
    while name in stages:
        chain.insert(0, name)
        name = stages[name]["from"]
    return chain


def effective(stages, name, instr):
    """Last value of an instruction along a target's stage chain, or None."""
    value = None
    for st in stage_chain(stages, name):
        for ins, args in stages[st]["ins"]:
            if ins == instr:
                value = args
    return value


def dockerignore_patterns():
    pats = []
    for line in read(".dockerignore").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pats.append(line)
    return pats


def dockerignored(rel, patterns):
    """Whether `rel` (or a directory containing it) is excluded by .dockerignore."""
    rel = os.path.normpath(rel)
    if rel == ".":
        return False
    parts = rel.split(os.sep)
    prefixes = [os.sep.join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip("/")
        for cand in prefixes:
            hit = fnmatch.fnmatchcase(cand, p)
            if not hit and p.startswith("**/"):
                tail = p[3:]
                hit = any(fnmatch.fnmatchcase(os.sep.join(cand.split(os.sep)[i:]), tail)
                          for i in range(len(cand.split(os.sep))))
            if hit:
                excluded = not neg
                break
    return excluded


class Dockerfile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = read("docker", "Dockerfile")
        cls.ins = dockerfile_instructions(cls.text)
        cls.stages, cls.order = dockerfile_stages(cls.ins)

    def test_targets_producer_and_worker_exist(self):
        for t in ("build", "producer", "worker"):
            self.assertIn(t, self.stages)

    def test_base_images_are_trixie(self):
        for name in self.order:
            base = self.stages[name]["from"]
            if base in self.stages:
                continue
            self.assertRegex(base, r"^(docker\.io/(library/)?)?debian:trixie(-slim)?(@sha256:[0-9a-f]+)?$",
                             "stage %s" % name)
        self.assertEqual(self.stages[stage_chain(self.stages, "build")[0]]["from"], "debian:trixie")
        for t in ("producer", "worker"):
            root = stage_chain(self.stages, t)[0]
            self.assertEqual(self.stages[root]["from"], "debian:trixie-slim", t)

    def test_copy_sources_exist_and_are_not_dockerignored(self):
        patterns = dockerignore_patterns()
        copies = 0
        for name in self.order:
            for ins, args in self.stages[name]["ins"]:
                if ins not in ("COPY", "ADD"):
                    continue
                words = args.split()
                if any(w.startswith("--from=") for w in words):
                    continue
                srcs = [w for w in words if not w.startswith("--")][:-1]
                self.assertTrue(srcs, "COPY without source: %r" % args)
                for src in srcs:
                    copies += 1
                    self.assertTrue(os.path.exists(path(src)), "COPY source missing: %s" % src)
                    self.assertFalse(dockerignored(src, patterns), "COPY source is dockerignored: %s" % src)
        self.assertGreaterEqual(copies, 2)

    def test_install_deps_script_installs_packages(self):
        build_runs = " ".join(a for i, a in self.stages["build"]["ins"] if i == "RUN")
        self.assertRegex(build_runs, r"install-deps\.sh --build\b")
        self.assertRegex(build_runs, r"-DVB_TESTS=OFF")
        self.assertRegex(build_runs, r"cmake --build")
        self.assertRegex(build_runs, r"cmake --install")
        for t in ("producer", "worker"):
            runs = " ".join(a for st in stage_chain(self.stages, t)
                            for i, a in self.stages[st]["ins"] if i == "RUN")
            self.assertRegex(runs, r"install-deps\.sh --runtime\b", t)
            self.assertNotRegex(runs, r"apt-get install", t + ": packages come from install-deps.sh")
        self.assertIn("--runtime", read("scripts", "install-deps.sh"))
        self.assertIn("--build", read("scripts", "install-deps.sh"))

    def test_runtime_user_is_visionbatch_10001(self):
        runs = " ".join(a for i, a in self.stages[stage_chain(self.stages, "worker")[0]]["ins"] if i == "RUN")
        self.assertRegex(runs, r"useradd\b[^&]*--uid 10001\b[^&]*\bvisionbatch\b")
        for t in ("producer", "worker"):
            user = effective(self.stages, t, "USER")
            self.assertIsNotNone(user, "%s has no USER" % t)
            name = user.split(":")[0]
            self.assertNotIn(name, ("root", "0"), t)
            self.assertIn(name, ("10001", "visionbatch"), t)

    def test_targets_have_healthcheck_entrypoint_and_port(self):
        programs = cmake_programs()
        for t, binary, port in (("producer", "visionbatch-producer", PRODUCER_PORT),
                                ("worker", "visionbatch-worker", WORKER_PORT)):
            self.assertIn(binary, programs)
            hc = effective(self.stages, t, "HEALTHCHECK")
            self.assertIsNotNone(hc, "%s has no HEALTHCHECK" % t)
            self.assertIn('"%s", "--healthcheck"' % binary, hc, t)
            self.assertNotIn("curl", hc, "the runtime image has no curl")
            self.assertEqual(effective(self.stages, t, "ENTRYPOINT"), '["%s"]' % binary)
            self.assertIn(str(port), (effective(self.stages, t, "EXPOSE") or "").split())
        copied = [a for i, a in self.stages["runtime"]["ins"] if i == "COPY" and "--from=build" in a]
        self.assertTrue(copied, "runtime copies nothing from the build stage")

    def test_dockerignore_keeps_state_and_secrets_out(self):
        patterns = dockerignore_patterns()
        for p in (".git", "build", "build-asan", "deploy/local/var", "docker/.env"):
            self.assertTrue(dockerignored(p, patterns), p)
        for p in ("CMakeLists.txt", "include", "common", "cli", "producer", "worker",
                  "scripts/install-deps.sh"):
            self.assertFalse(dockerignored(p, patterns), p)


# --------------------------------------------------------------------------
# Compose
# --------------------------------------------------------------------------


def compose_variables(node, found):
    """Names used as ${VAR} / $VAR in compose values ($$ is a literal $)."""
    if isinstance(node, dict):
        for k, v in node.items():
            compose_variables(k, found)
            compose_variables(v, found)
    elif isinstance(node, list):
        for v in node:
            compose_variables(v, found)
    elif isinstance(node, str):
        s = node.replace("$$", "")
        found.update(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", s))
        found.update(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", s))
    return found


def port_targets(service):
    out = []
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out.append(int(p["target"]))
        else:
            out.append(int(str(p).rsplit(":", 1)[-1].split("/")[0]))
    return out


def command_text(service):
    parts = []
    for key in ("entrypoint", "command"):
        v = service.get(key)
        if isinstance(v, list):
            parts.extend(str(x) for x in v)
        elif v:
            parts.append(str(v))
    return " ".join(parts).replace("\\\n", " ")


class Compose(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.compose = load_yaml("docker", "compose.yaml")
        cls.services = cls.compose["services"]
        cls.env = parse_env_file("docker", ".env.example")

    def test_services_exist(self):
        for s in ("kafka", "redis", "topic-init", "producer", "worker"):
            self.assertIn(s, self.services)

    def test_kafka_is_kraft_single_node_with_volume_and_healthcheck(self):
        k = self.services["kafka"]
        self.assertEqual(k["image"], "apache/kafka:4.1.1")
        env = k["environment"]
        self.assertIn("controller", env["KAFKA_PROCESS_ROLES"])
        self.assertIn("broker", env["KAFKA_PROCESS_ROLES"])
        for key in ("KAFKA_NODE_ID", "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_CONTROLLER_LISTENER_NAMES",
                    "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"):
            self.assertIn(key, env)
        self.assertIn("PLAINTEXT://kafka:9092", env["KAFKA_ADVERTISED_LISTENERS"])
        self.assertEqual(str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]), "false")
        self.assertIn("test", k["healthcheck"])
        self.assertTrue(any(str(v).endswith(":" + env["KAFKA_LOG_DIRS"]) for v in k["volumes"]))

    def test_redis_appendonly_with_volume_and_healthcheck(self):
        r = self.services["redis"]
        self.assertEqual(r["image"], "redis:8-trixie")
        cmd = command_text(r)
        self.assertRegex(cmd, r"--appendonly\s+yes")
        self.assertIn("redis-cli", " ".join(r["healthcheck"]["test"]))
        self.assertTrue(any(str(v).endswith(":/data") for v in r["volumes"]))

    def test_topic_init_creates_both_topics_after_kafka_is_healthy(self):
        t = self.services["topic-init"]
        self.assertEqual(t["image"], self.services["kafka"]["image"])
        self.assertEqual(t["depends_on"]["kafka"]["condition"], "service_healthy")
        cmd = command_text(t)
        self.assertIn("/opt/kafka/bin/kafka-topics.sh", cmd)
        for topic in (TOPIC, DLQ):
            self.assertRegex(cmd, r"--create --if-not-exists\s+--topic %s\s" % re.escape(topic))
        self.assertRegex(cmd, r"--topic visionbatch\.runs --partitions \$\{RUNS_TOPIC_PARTITIONS:-6\}")
        self.assertEqual(t.get("restart", "no"), "no", "a one-shot job must not restart")

    def test_producer_publishes_8000_and_waits_for_topics_and_redis(self):
        p = self.services["producer"]
        self.assertEqual(p["build"]["target"], "producer")
        self.assertEqual(p["build"]["dockerfile"], "docker/Dockerfile")
        self.assertTrue(os.path.isdir(os.path.normpath(path("docker", p["build"]["context"]))))
        self.assertIn(PRODUCER_PORT, port_targets(p))
        self.assertEqual(p["env_file"], ".env")
        self.assertEqual(p["environment"]["VISIONBATCH_LISTEN"], "0.0.0.0:%d" % PRODUCER_PORT)
        self.assertIn("VISIONBATCH_API_TOKEN", self.env, "a non-loopback listen needs the token")
        self.assertEqual(p["depends_on"]["topic-init"]["condition"], "service_completed_successfully")
        self.assertEqual(p["depends_on"]["redis"]["condition"], "service_healthy")

    def test_worker_can_be_scaled(self):
        w = self.services["worker"]
        self.assertEqual(w["build"]["target"], "worker")
        self.assertNotIn("container_name", w)
        self.assertNotIn("ports", w)
        self.assertNotIn("hostname", w)
        self.assertEqual(w["env_file"], ".env")
        self.assertEqual(w["depends_on"]["topic-init"]["condition"], "service_completed_successfully")
        self.assertEqual(w["depends_on"]["redis"]["condition"], "service_healthy")
        self.assertGreaterEqual(duration_seconds(w["stop_grace_period"]),
                                shutdown_grace(self.env) + GRACE_MARGIN_S)

    def test_ui_profile_serves_kafka_ui_on_8080(self):
        ui = [s for s in self.services.values() if "ui" in s.get("profiles", [])]
        self.assertEqual(len(ui), 1)
        self.assertRegex(ui[0]["image"], r"^(provectuslabs|kafbat)/kafka-ui:")
        self.assertIn(8080, port_targets(ui[0]))
        for name, s in self.services.items():
            if s not in ui:
                self.assertNotIn("profiles", s, name)

    def test_named_volumes_are_declared(self):
        declared = set((self.compose.get("volumes") or {}).keys())
        used = set()
        for s in self.services.values():
            for v in s.get("volumes", []):
                src = v["source"] if isinstance(v, dict) else str(v).split(":")[0]
                if not src.startswith((".", "/", "~")):
                    used.add(src)
        self.assertTrue(used)
        self.assertEqual(used - declared, set())

    def test_env_example_defines_every_variable_compose_uses(self):
        used = compose_variables(self.compose, set())
        self.assertTrue(used)
        self.assertEqual(sorted(used - set(self.env)), [])

    def test_env_example_lists_spec_settings_without_secrets(self):
        for k in SPEC_ENV + ["VISIONBATCH_LOG_FILE", "VISIONBATCH_LOG_FORMAT", "VISIONBATCH_TEMP_DIR",
                             "VISIONBATCH_SHUTDOWN_GRACE_S"]:
            self.assertIn(k, self.env)
        for k in SECRET_ENV:
            self.assertEqual(self.env[k], "", "%s must be empty in the example" % k)
        self.assertIn("/docker/.env", read(".gitignore").split())

    def test_no_top_level_name_and_project_name_in_env_example(self):
        # docker-compose 1.29 (Debian's) refuses a top-level `name`.
        self.assertNotIn("name", self.compose)
        self.assertEqual(self.env.get("COMPOSE_PROJECT_NAME"), "visionbatch")

    def test_producer_and_worker_carry_their_healthchecks(self):
        # Podman drops image HEALTHCHECKs of OCI-format images: compose repeats them.
        for svc, prog in (("producer", "visionbatch-producer"), ("worker", "visionbatch-worker")):
            self.assertEqual(self.services[svc]["healthcheck"]["test"], ["CMD", prog, "--healthcheck"])

    def config_in_copy(self, cmd):
        """`cmd -f <copy>/docker/compose.yaml --profile ui config -q` with .env from the example."""
        with tempfile.TemporaryDirectory() as tmp:
            os.mkdir(os.path.join(tmp, "docker"))
            for f in ("compose.yaml", "Dockerfile"):
                shutil.copy(path("docker", f), os.path.join(tmp, "docker", f))
            shutil.copy(path("docker", ".env.example"), os.path.join(tmp, "docker", ".env"))
            r = subprocess.run(cmd + ["-f", os.path.join(tmp, "docker", "compose.yaml"),
                                      "--profile", "ui", "config", "-q"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)

    def test_docker_compose_v1_accepts_the_file_when_installed(self):
        exe = shutil.which("docker-compose")
        if not exe:
            self.skipTest("docker-compose not installed")
        self.config_in_copy([exe])

    def test_compose_config_when_the_plugin_exists(self):
        docker = shutil.which("docker")
        if not docker:
            self.skipTest("docker CLI not installed")
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if probe.returncode != 0:
            self.skipTest("docker compose plugin not installed")
        self.config_in_copy([docker, "compose"])


# --------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------


def parse_unit(text):
    """{section: [(key, value)]}; repeated keys are kept in order."""
    sections, cur, buf = {}, None, ""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        line, buf = buf + line, ""
        m = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if m:
            cur = m.group(1)
            if cur in sections:
                raise AssertionError("line %d: section [%s] twice" % (n, cur))
            sections[cur] = []
            continue
        m = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*)", line)
        if not m or cur is None:
            raise AssertionError("line %d: not Key=value in a section: %r" % (n, raw))
        sections[cur].append((m.group(1), m.group(2)))
    return sections


def unit_values(sections, section, key):
    return [v for k, v in sections.get(section, []) if k == key]


def unit_value(sections, section, key):
    vals = unit_values(sections, section, key)
    return vals[-1] if vals else None


UNITS = ("visionbatch-producer.service", "visionbatch-worker@.service")


class Systemd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.units = {u: parse_unit(read("deploy", "systemd", u)) for u in UNITS}
        cls.env = parse_env_file("deploy", "systemd", "visionbatch.env.example")

    def test_sections_and_execstart(self):
        programs = cmake_programs()
        for name, u in self.units.items():
            self.assertEqual(set(u), {"Unit", "Service", "Install"}, name)
            exe = unit_value(u, "Service", "ExecStart").split()[0]
            self.assertTrue(exe.startswith("/usr/local/bin/"), name)
            self.assertIn(os.path.basename(exe), programs, name)
            self.assertEqual(os.path.basename(exe), name.split("@")[0].split(".")[0], name)
            self.assertEqual(unit_value(u, "Install", "WantedBy"), "multi-user.target")
            self.assertEqual(unit_value(u, "Service", "EnvironmentFile"), "/etc/visionbatch/visionbatch.env")

    def test_hardening(self):
        required = {
            "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
            "PrivateTmp": "yes", "CapabilityBoundingSet": "", "MemoryDenyWriteExecute": "yes",
            "LockPersonality": "yes", "Restart": "on-failure", "KillSignal": "SIGTERM",
        }
        for name, u in self.units.items():
            for key, want in required.items():
                self.assertEqual(unit_value(u, "Service", key), want, "%s %s" % (name, key))
            self.assertTrue(unit_value(u, "Service", "DynamicUser") == "yes"
                            or unit_value(u, "Service", "User") == "visionbatch", name)
            families = unit_value(u, "Service", "RestrictAddressFamilies").split()
            self.assertEqual(set(families), {"AF_UNIX", "AF_INET", "AF_INET6"}, name)
            self.assertIn("@system-service", unit_values(u, "Service", "SystemCallFilter"), name)
            self.assertIn("/var/log/visionbatch", unit_value(u, "Service", "ReadWritePaths"), name)
            self.assertIsNotNone(unit_value(u, "Service", "TimeoutStopSec"), name)

    def test_worker_template_instance_is_the_metrics_port(self):
        u = self.units["visionbatch-worker@.service"]
        self.assertRegex(unit_value(u, "Service", "ExecStart"), r"--metrics-listen 127\.0\.0\.1:%i(\s|$)")
        stop = duration_seconds(unit_value(u, "Service", "TimeoutStopSec"))
        self.assertGreaterEqual(stop, shutdown_grace(self.env) + GRACE_MARGIN_S)
        k8s = load_yaml("deploy", "k8s", "worker-deployment.yaml")
        self.assertEqual(stop, k8s["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
        compose = load_yaml("docker", "compose.yaml")
        self.assertEqual(stop, duration_seconds(compose["services"]["worker"]["stop_grace_period"]))

    def test_env_example_lists_settings_without_secrets(self):
        for k in SPEC_ENV + ["VISIONBATCH_LISTEN", "VISIONBATCH_SHUTDOWN_GRACE_S", "VISIONBATCH_LOG_FILE"]:
            self.assertIn(k, self.env)
        for k in SECRET_ENV:
            self.assertEqual(self.env[k], "", k)
        self.assertNotIn("VISIONBATCH_METRICS_LISTEN", self.env, "set per instance by the unit")

    def test_systemd_analyze_verify_when_available(self):
        tool = shutil.which("systemd-analyze")
        if not tool:
            self.skipTest("systemd-analyze not installed")
        with tempfile.TemporaryDirectory() as tmp:
            targets = []
            for name in UNITS:
                text = read("deploy", "systemd", name)
                for prog in cmake_programs():
                    stub = os.path.join(tmp, prog)
                    with open(stub, "w") as f:
                        f.write("#!/bin/sh\n")
                    os.chmod(stub, 0o755)
                    text = text.replace("/usr/local/bin/%s " % prog, stub + " ")
                    text = text.replace("/usr/local/bin/%s\n" % prog, stub + "\n")
                text = text.replace("EnvironmentFile=/", "EnvironmentFile=-/")
                inst = name.replace("@.", "@9101.")
                with open(os.path.join(tmp, inst), "w") as f:
                    f.write(text)
                targets.append(os.path.join(tmp, inst))
            r = subprocess.run([tool, "verify"] + targets, capture_output=True, text=True, cwd=tmp)
            bad = [l for l in (r.stdout + r.stderr).splitlines()
                   if re.search(r"Unknown|Invalid|Failed to parse|ignoring|not absolute", l)]
            self.assertEqual(bad, [])


# --------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------


class Kubernetes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.kust = load_yaml("deploy", "k8s", "kustomization.yaml")
        cls.objects = []
        for res in cls.kust["resources"]:
            for doc in load_yaml_docs("deploy", "k8s", res):
                cls.objects.append((res, doc))

    def find(self, kind, name):
        hits = [d for _, d in self.objects if d["kind"] == kind and d["metadata"]["name"] == name]
        self.assertEqual(len(hits), 1, "%s/%s" % (kind, name))
        return hits[0]

    def container(self, deployment):
        cs = deployment["spec"]["template"]["spec"]["containers"]
        self.assertEqual(len(cs), 1)
        return cs[0]

    def test_image_tags_are_the_project_version(self):
        m = re.search(r"project\(\s*visionbatch\s+VERSION\s+([0-9][0-9A-Za-z.]*)", read("CMakeLists.txt"))
        self.assertIsNotNone(m, "CMakeLists.txt: project(visionbatch VERSION …)")
        version = m.group(1)
        tags = {i["name"]: str(i["newTag"]) for i in self.kust["images"]}
        self.assertEqual(tags, {"visionbatch-producer": version, "visionbatch-worker": version})
        for name in ("visionbatch-producer", "visionbatch-worker"):
            image = self.container(self.find("Deployment", name))["image"]
            self.assertEqual(image, "%s:%s" % (name, version), name)

    def test_kustomization_resources_exist_and_all_have_a_namespace(self):
        for res in self.kust["resources"]:
            self.assertTrue(os.path.isfile(path("deploy", "k8s", res)), res)
        self.assertNotIn("secret.example.yaml", self.kust["resources"])
        for res, d in self.objects:
            self.assertIn("apiVersion", d, res)
            if d["kind"] != "Namespace":
                self.assertEqual(d["metadata"].get("namespace"), "visionbatch", res)

    def test_secret_example_has_placeholders_only(self):
        s = load_yaml("deploy", "k8s", "secret.example.yaml")
        self.assertEqual(s["kind"], "Secret")
        self.assertEqual(sorted(s["stringData"]), sorted(SECRET_ENV))
        self.assertTrue(all(v == "REPLACE_ME" for v in s["stringData"].values()))

    def test_configmap_carries_the_settings(self):
        cm = self.find("ConfigMap", "visionbatch-config")
        secret = load_yaml("deploy", "k8s", "secret.example.yaml")
        for k in SPEC_ENV:
            self.assertTrue(k in cm["data"] or k in secret["stringData"], k)
        for v in cm["data"].values():
            self.assertIsInstance(v, str)

    def check_pod(self, dep, port, liveness, readiness):
        spec = dep["spec"]["template"]["spec"]
        c = self.container(dep)
        self.assertTrue(spec["securityContext"]["runAsNonRoot"])
        self.assertEqual(spec["securityContext"]["runAsUser"], 10001)
        self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"])
        self.assertIn("requests", c["resources"])
        self.assertIn("memory", c["resources"]["limits"])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertIn(port, ports.values())
        for probe, want in (("livenessProbe", liveness), ("readinessProbe", readiness),
                            ("startupProbe", "/healthz")):
            get = c[probe]["httpGet"]
            self.assertEqual(get["path"], want, probe)
            self.assertEqual(ports.get(get["port"], get["port"]), port, probe)
        refs = [e.get("configMapRef", e.get("secretRef"))["name"] for e in c["envFrom"]]
        self.assertEqual(sorted(refs), ["visionbatch-config", "visionbatch-secrets"])
        self.assertIn("terminationGracePeriodSeconds", spec)
        return spec, c

    def test_producer_two_replicas_with_probes(self):
        dep = self.find("Deployment", "visionbatch-producer")
        self.assertEqual(dep["spec"]["replicas"], 2)
        spec, c = self.check_pod(dep, PRODUCER_PORT, "/healthz", "/readyz")
        self.assertEqual(c["image"].split(":")[0], "visionbatch-producer")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        self.assertEqual(env["VISIONBATCH_LISTEN"], "0.0.0.0:%d" % PRODUCER_PORT)

    def test_worker_deployment_grace_and_probes(self):
        dep = self.find("Deployment", "visionbatch-worker")
        spec, c = self.check_pod(dep, WORKER_PORT, "/healthz", "/healthz")
        cm = self.find("ConfigMap", "visionbatch-config")
        self.assertGreaterEqual(spec["terminationGracePeriodSeconds"],
                                shutdown_grace(cm["data"]) + GRACE_MARGIN_S)
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        self.assertEqual(env["VISIONBATCH_METRICS_LISTEN"], "0.0.0.0:%d" % WORKER_PORT)

    def test_keda_scales_workers_on_group_lag_within_partitions(self):
        so = self.find("ScaledObject", "visionbatch-worker")
        self.assertEqual(so["spec"]["scaleTargetRef"]["name"], "visionbatch-worker")
        trig = [t for t in so["spec"]["triggers"] if t["type"] == "kafka"]
        self.assertEqual(len(trig), 1)
        meta = trig[0]["metadata"]
        self.assertEqual(meta["consumerGroup"], GROUP)
        self.assertEqual(meta["topic"], TOPIC)
        for v in meta.values():
            self.assertIsInstance(v, str, "KEDA metadata values are strings")
        cm = self.find("ConfigMap", "visionbatch-config")
        self.assertEqual(meta["bootstrapServers"], cm["data"]["KAFKA_BROKERS"])
        self.assertEqual(meta["lagThreshold"], cm["data"]["VISIONBATCH_CONCURRENCY"])
        job = self.find("Job", "visionbatch-topic-init")
        args = " ".join(self.container({"spec": job["spec"]})["args"])
        partitions = int(re.search(r"--topic visionbatch\.runs --partitions (\d+)", args).group(1))
        self.assertIn(DLQ, args)
        self.assertLessEqual(so["spec"]["maxReplicaCount"], partitions)
        self.assertGreaterEqual(so["spec"]["maxReplicaCount"], so["spec"]["minReplicaCount"])
        compose_default = int(parse_env_file("docker", ".env.example")["RUNS_TOPIC_PARTITIONS"])
        self.assertEqual(partitions, compose_default)

    def test_services_select_the_deployments(self):
        for _, svc in [(r, d) for r, d in self.objects if d["kind"] == "Service"]:
            sel = svc["spec"]["selector"]
            deps = [d for _, d in self.objects if d["kind"] == "Deployment"
                    and all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
            self.assertEqual(len(deps), 1, svc["metadata"]["name"])
            names = {p["name"] for p in self.container(deps[0])["ports"]}
            for p in svc["spec"]["ports"]:
                self.assertIn(p["targetPort"], names)

    def test_kustomize_build_when_kubectl_exists(self):
        kubectl = shutil.which("kubectl")
        if not kubectl:
            self.skipTest("kubectl not installed")
        r = subprocess.run([kubectl, "kustomize", path("deploy", "k8s")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        kinds = [d["kind"] for d in yaml.safe_load_all(r.stdout) if d]
        self.assertEqual(len(kinds), len(self.objects))


# --------------------------------------------------------------------------
# Documentation and dependencies
# --------------------------------------------------------------------------


class DocsAndDeps(unittest.TestCase):
    def test_install_deps_has_python3_yaml_for_these_tests(self):
        m = re.search(r"TEST_PKGS=\(([^)]*)\)", read("scripts", "install-deps.sh"))
        self.assertIn("python3-yaml", m.group(1).split())

    def test_docs_mention_only_existing_deployment_files(self):
        for doc in ("deploy.md", "scaling.md"):
            text = read("docs", doc)
            refs = set(re.findall(r"\b((?:docker|deploy/systemd|deploy/k8s|scripts)/[\w@.\-/]+)", text))
            self.assertTrue(refs, doc)
            for ref in refs:
                ref = ref.rstrip(".")
                if ref in ("docker/.env",):
                    continue  # created by the user from .env.example
                self.assertTrue(os.path.exists(path(ref)), "%s mentions missing %s" % (doc, ref))


if __name__ == "__main__":
    unittest.main()
