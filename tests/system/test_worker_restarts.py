"""System test of visionbatch-worker across restarts of Kafka and Redis
(deploy/local/services.sh restart): two workers finish every run, each
uploaded once, while Redis and then Kafka go down and come back.

The services restarted are a private pair started by this test through
services.sh (own state directory, free ports; Redis with its AOF, as
deployed), so the suites running beside it keep their Kafka and Redis.
Topics and consumer group are the test's own, as in test_worker.py.
"""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

import harness
import test_worker

SERVICES = os.environ.get("VB_SERVICES_SCRIPT") or os.path.join(harness.SOURCE_DIR, "deploy", "local",
                                                                 "services.sh")


class WorkerRestartTest(test_worker.WorkerCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(SERVICES, os.X_OK):
            raise AssertionError("deploy/local/services.sh missing")
        cls.svc_dir = tempfile.mkdtemp(prefix="vb-services-")
        cls.addClassCleanup(shutil.rmtree, cls.svc_dir, True)
        cls.svc_env = dict(harness.program_env(), VB_SERVICES_DIR=cls.svc_dir,
                           REDIS_PORT=str(test_worker.free_port()),
                           KAFKA_PORT=str(test_worker.free_port()),
                           KAFKA_CONTROLLER_PORT=str(test_worker.free_port()))
        cls.addClassCleanup(cls.services, "stop")
        cls.services("start")
        cls.kafka = "127.0.0.1:%s" % cls.svc_env["KAFKA_PORT"]
        super().setUpClass()
        cls.redis_port, cls.redis_db = int(cls.svc_env["REDIS_PORT"]), 0

    @classmethod
    def services(cls, *args):
        """Runs services.sh on the private pair; output to a file (the daemons inherit no pipe)."""
        with open(os.path.join(cls.svc_dir, "services.log"), "ab") as log:
            subprocess.run([SERVICES] + list(args), check=True, timeout=240, env=cls.svc_env,
                           stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def test_redis_and_kafka_restarts_mid_stream(self):
        scen, platform, backend = self.start_stubs(12, batch_delay=1)
        w1 = self.start_worker(platform, backend, "f1")
        w2 = self.start_worker(platform, backend, "f2")
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        msgs = [(i, test_worker.message(r)) for i, r in zip(ids, scen["runs"])]
        self.publish(msgs[:6])
        harness.wait_until(lambda: any(self.redis.run(i).get("state") for i in ids),
                           timeout=60, interval=0.2, message="work started")
        self.services("restart", "redis")
        self.publish(msgs[6:])
        self.services("restart", "kafka")
        self.wait_uploaded(platform, ids, timeout=150, workers=(w1, w2))
        time.sleep(1)
        self.assert_once(platform, ids)


if __name__ == "__main__":
    unittest.main()
