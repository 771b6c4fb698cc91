"""System tests of the worker's intake: prefetched messages feed freed slots
without another fetch, offsets are committed only for runs recorded in Redis
(a kill -9 loses nothing), a rebalance moves queued messages to the new
owner of their partition, and a worker whose slots and queue are full stays
in its group well past max.poll.interval.ms.

Same services and conventions as test_worker.py (tw.WorkerCase: the Kafka of
deploy/local/services.sh with topics and a consumer group of each test's own,
a private redis-server for the class, fresh upper-case run ids). The backend
stand-in is the gate: with polls_to_complete set out of reach no batch
completes, so the slots stay busy until the test sets it back to 1.

Nothing here measures speed (that is tests/bench/bench_distributed.py); the
signals are counts and states: which runs were uploaded after the topic's
records were deleted, which committed offsets have a run record, which
worker skipped what.
"""

import json
import os
import signal
import time
import unittest

import harness
import test_worker as tw

CLOSED = 1000000  # polls_to_complete: no batch completes


class WorkerIntakeTest(tw.WorkerCase):
    def gated_stubs(self, n):
        scen = self.scenario(n)
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend(polls_to_complete=CLOSED)
        return scen, platform, backend

    def metric(self, w, name):
        body = harness.http_request("GET", "http://127.0.0.1:%d/metrics" % w.port).text()
        for line in body.splitlines():
            if line.split(" ")[0] == name:
                return float(line.split()[-1])
        raise AssertionError("%s not in the worker's metrics" % name)

    def processing(self, ids, worker=None):
        out = []
        for i in ids:
            st = self.redis.run(i)
            if st.get("state") == "processing" and worker in (None, st.get("worker")):
                out.append(i)
        return out

    def committed(self):
        """{partition: committed offset} of this test's group on its topic."""
        path = self.write_config({"log_file": ""}, name="topics.json")
        r = self.run_cli("topics", "--config", path, "--kafka-brokers", self.kafka,
                         "--topic", self.topic, "--group-id", self.group, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = {}
        for t in json.loads(r.stdout)["topics"]:
            for lag in t.get("lag", []) if t["name"] == self.topic else []:
                if lag.get("committed") is not None:
                    out[lag["partition"]] = lag["committed"]
        return out

    # ------------------------------------------------------------------

    def test_freed_slots_take_prefetched_messages_without_a_new_fetch(self):
        scen, platform, backend = self.gated_stubs(10)
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        w = self.start_worker(platform, backend, "p1", concurrency=2, extra=("--prefetch", "3"))
        self.publish([(i, tw.message(r)) for i, r in zip(ids, scen["runs"])])
        # Both slots busy and three more rounds (prefetch x slots) queued: intake paused,
        # two runs left in Kafka.
        harness.wait_until(lambda: len(self.processing(ids)) == 2 and
                           self.metric(w, "visionbatch_intake_queued_messages") == 6,
                           timeout=60, interval=0.2, message="2 runs in slots, 6 queued")
        # Kafka can no longer deliver any of the runs: only what the worker
        # holds can still be processed.
        harness.truncate_topic(self.topic, 4, self.kafka)
        backend.config(polls_to_complete=1)
        counts = {}

        def eight_uploaded():
            counts.update(self.uploads_by_run(platform))
            return sum(1 for i in ids if counts.get(i)) >= 8
        harness.wait_until(eight_uploaded, timeout=90, interval=0.5,
                           message="the 2 running and the 6 queued runs uploaded")
        self.assertEqual(self.metric(w, "visionbatch_intake_queued_messages"), 0)
        self.assertTrue(all(counts.get(i, 0) <= 1 for i in ids), counts)
        self.assertTrue(w.alive())

    def test_kill_nine_commits_only_runs_recorded_in_redis(self):
        scen = self.scenario(12)
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend(batch_delay=1.0, polls_to_complete=1)
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        a = self.start_worker(platform, backend, "k1", concurrency=2)
        self.publish([(i, tw.message(r)) for i, r in zip(ids, scen["runs"])])
        # Mid-stream: some runs done and their offsets committed, runs in both
        # slots, messages queued.
        harness.wait_until(lambda: sum(self.committed().values()) >= 3 and
                           len(self.processing(ids, a.worker_id)) == 2 and
                           self.metric(a, "visionbatch_intake_queued_messages") > 0,
                           timeout=90, interval=0.3, message="a mid-stream")
        a.signal(signal.SIGKILL)
        a.wait(5)
        a.must_live = False
        committed = self.committed()
        by_partition = {}
        for m in harness.read_topic(self.topic, self.kafka):
            by_partition.setdefault(m["partition"], []).append((m["offset"], m["key"]))
        below = [key for p, c in committed.items() for off, key in by_partition.get(p, [])
                 if off < c]
        self.assertGreaterEqual(len(below), 3)
        for key in below:
            st = self.redis.run(key)
            self.assertGreaterEqual(int(st.get("attempts", 0)), 1,
                                    "run %s committed before it was recorded: %r" % (key, st))
        b = self.start_worker(platform, backend, "k2", concurrency=2)
        self.wait_uploaded(platform, ids, timeout=180, workers=(b,))
        self.assert_once(platform, ids)

    def test_queued_messages_of_revoked_partitions_go_to_the_new_owner(self):
        scen, platform, backend = self.gated_stubs(12)
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        runs = dict(zip(ids, scen["runs"]))
        # Three runs per partition: a's 4 slots take at most one per
        # partition, so its 8 queued messages span at least three partitions
        # and b's share of the partitions always includes queued messages.
        for p in range(4):
            harness.kcat_publish(self.topic, [(i, tw.message(runs[i])) for i in ids[p::4]],
                                 self.kafka, partition=p)
        a = self.start_worker(platform, backend, "r1", concurrency=4, extra=("--prefetch", "2"))
        harness.wait_until(lambda: len(self.processing(ids)) == 4 and
                           self.metric(a, "visionbatch_intake_queued_messages") == 8,
                           timeout=60, interval=0.2, message="4 runs in slots, 8 queued")
        b = self.start_worker(platform, backend, "r2", concurrency=4, extra=("--prefetch", "2"))
        harness.wait_until(lambda: "dropped: the partition went to another worker" in a.stderr(),
                           timeout=60, interval=0.2, message="a dropping queued messages")
        harness.wait_until(lambda: self.processing(ids, b.worker_id), timeout=60, interval=0.2,
                           message="b running runs of its new partitions")
        backend.config(polls_to_complete=1)
        self.wait_uploaded(platform, ids, timeout=120, workers=(a, b))
        self.assert_once(platform, ids)
        for i in ids:
            self.assertEqual(self.redis.run(i).get("attempts"), "1", i)
        # Each message was handled by one worker only: a never claimed a
        # message it had dropped, b never saw one a had claimed.
        for w in (a, b):
            log = w.stderr()
            self.assertNotIn("message skipped", log)
            self.assertNotIn("is locked by another worker", log)
        self.assertEqual({self.redis.run(i).get("worker") for i in ids},
                         {a.worker_id, b.worker_id})

    def test_full_queue_keeps_the_worker_in_the_group_past_max_poll_interval(self):
        scen, platform, backend = self.gated_stubs(6)
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        # librdkafka's smallest allowed bound (= session.timeout.ms): a poll
        # loop that stopped while the slot and the queue are full would be
        # put out of the group after 10 s, its partitions revoked.
        w = self.start_worker(platform, backend, "m1", concurrency=1,
                              extra=("--kafka-property", "max.poll.interval.ms=10000",
                                     "--prefetch", "2"))
        self.publish([(i, tw.message(r)) for i, r in zip(ids, scen["runs"])])
        harness.wait_until(lambda: len(self.processing(ids)) == 1 and
                           self.metric(w, "visionbatch_intake_queued_messages") == 2,
                           timeout=60, interval=0.2, message="1 run in the slot, 2 queued")
        time.sleep(25)  # two and a half times max.poll.interval.ms, everything busy
        self.assertEqual(self.metric(w, "visionbatch_intake_queued_messages"), 2)
        backend.config(polls_to_complete=1)
        self.wait_uploaded(platform, ids, timeout=120, workers=(w,))
        self.assert_once(platform, ids)
        log = w.stderr()
        self.assertEqual(log.count("partition(s) assigned"), 1, log[-3000:])
        self.assertNotIn("partition(s) revoked", log)
        self.assertNotIn("partition(s) lost", log)
        self.assertNotIn("message skipped", log)


if __name__ == "__main__":
    unittest.main()
