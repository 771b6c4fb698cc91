"""System test of visionbatch-worker across restarts of the shared Kafka and
Redis (deploy/local/services.sh restart): two workers finish every run,
each uploaded once, while Redis and then Kafka go down and come back.

It restarts the services every other suite uses, so CTest runs it alone:
# ctest: RUN_SERIAL
Its runs live in the shared Redis (database 12, run ids fresh to the test);
its topics and consumer group are its own, as in test_worker.py.
"""

import os
import subprocess
import time
import unittest

import harness
import test_worker

SERVICES = os.environ.get("VB_SERVICES_SCRIPT") or os.path.join(harness.SOURCE_DIR, "deploy", "local",
                                                                 "services.sh")
SHARED_REDIS_DB = 12


def restart(service):
    """Restarts a local service; output to a file (the daemons inherit no pipe)."""
    with open(os.devnull, "wb") as null:
        subprocess.run([SERVICES, "restart", service], check=True, timeout=240,
                       stdin=subprocess.DEVNULL, stdout=null, stderr=null)


class WorkerRestartTest(test_worker.WorkerCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The Redis that services.sh restarts, not the class's private one.
        cls.redis_port = int(os.environ.get("REDIS_PORT", "6379"))
        cls.redis_db = SHARED_REDIS_DB

    @unittest.skipUnless(os.access(SERVICES, os.X_OK), "deploy/local/services.sh missing")
    def test_redis_and_kafka_restarts_mid_stream(self):
        scen, platform, backend = self.start_stubs(12, batch_delay=1)
        w1 = self.start_worker(platform, backend, "f1")
        w2 = self.start_worker(platform, backend, "f2")
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        msgs = [(i, test_worker.message(r)) for i, r in zip(ids, scen["runs"])]
        self.publish(msgs[:6])
        harness.wait_until(lambda: any(self.redis.run(i).get("state") for i in ids),
                           timeout=60, interval=0.2, message="work started")
        restart("redis")
        self.publish(msgs[6:])
        restart("kafka")
        self.wait_uploaded(platform, ids, timeout=150, workers=(w1, w2))
        time.sleep(1)
        self.assert_once(platform, ids)


if __name__ == "__main__":
    unittest.main()
