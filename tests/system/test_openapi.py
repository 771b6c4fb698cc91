"""The OpenAPI document of the producer's REST API against a real validator.

The document's source is producer/openapi.json; the build substitutes the
version from project(VERSION) and embeds the bytes in visionbatch-producer,
leaving the substituted document at $VB_BIN_DIR/producer/openapi.json (the
bytes served at GET /openapi.json). That file is validated with PyPI's
openapi-spec-validator, which scripts/install-deps.sh installs into the
checkout's .venv/; without it the test fails (it does not skip). That the
document lists exactly the routes the server answers is checked by
tests/unit/test_api.c against the route table.

Environment: VB_BIN_DIR = build directory, VB_SOURCE_DIR = repository root
(both set by CTest).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

SOURCE_DIR = os.path.abspath(
    os.environ.get("VB_SOURCE_DIR")
    or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
)
BIN_DIR = os.environ.get("VB_BIN_DIR") or os.path.join(SOURCE_DIR, "build")
BUILT = os.path.join(BIN_DIR, "producer", "openapi.json")

VALIDATE = (
    "import json, sys\n"
    "from openapi_spec_validator import validate\n"
    "with open(sys.argv[1], encoding='utf-8') as f:\n"
    "    validate(json.load(f))\n"
)


def validator_python():
    """The interpreter that has openapi_spec_validator: .venv's, else this one."""
    venv = os.path.join(SOURCE_DIR, ".venv", "bin", "python")
    if os.access(venv, os.X_OK):
        return venv
    try:
        import openapi_spec_validator  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def project_version():
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt"), encoding="utf-8") as f:
        m = re.search(r"project\(\s*visionbatch\s+VERSION\s+([0-9][0-9A-Za-z.]*)", f.read())
    return m.group(1)


class OpenApiDocument(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(BUILT, encoding="utf-8") as f:
            cls.text = f.read()
        cls.doc = json.loads(cls.text)
        cls.python = validator_python()

    def validate(self, path):
        if self.python is None:
            self.fail("openapi-spec-validator is missing: run scripts/install-deps.sh")
        return subprocess.run([self.python, "-c", VALIDATE, path], capture_output=True,
                              text=True, timeout=120)

    def test_built_document_is_valid_openapi(self):
        r = self.validate(BUILT)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])

    def test_validator_rejects_a_broken_document(self):
        # The positive result above means something only if the validator
        # really checks: a reference to a missing component must be refused.
        broken = json.loads(self.text)
        op = broken["paths"]["/cron-jobs"]["get"]
        op["responses"]["500"] = {"$ref": "#/components/responses/NoSuchResponse"}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(broken, f)
        try:
            r = self.validate(f.name)
        finally:
            os.unlink(f.name)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("NoSuchResponse", r.stderr)

    def test_version_is_the_project_version(self):
        self.assertEqual(self.doc["info"]["version"], project_version())
        self.assertNotIn("@VB_VERSION@", self.text)

    def test_error_responses_are_one_shared_component(self):
        error = {"$ref": "#/components/responses/Error"}
        self.assertIn("Error", self.doc["components"]["responses"])
        refs = 0
        for path, item in self.doc["paths"].items():
            for method, op in item.items():
                if method == "parameters":
                    continue
                for code, resp in op["responses"].items():
                    content = json.dumps(resp.get("content", {}))
                    self.assertNotIn("#/components/schemas/Error", content,
                                     "%s %s %s: use the shared Error response" % (method, path, code))
                    refs += resp == error
        self.assertGreater(refs, 0)


if __name__ == "__main__":
    unittest.main()
