#!/usr/bin/env python3
"""Self-test of moto_launcher.py: starts it as a child process, as the Rust tests do, and drives
it with boto3 (installed with moto). Run from anywhere with the project's venv:

    .venv/bin/python tests/tooling/test_moto_launcher.py

Plain unittest (no pytest needed). Nothing here depends on how fast the machine is: every state
that moves with time is held by the emulator's clock (``POST /_sluice/clock``, frozen in each
test) and moved forward by the test, or only a final state is awaited."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import boto3
from botocore.config import Config

LAUNCHER = Path(__file__).resolve().parent / "moto_launcher.py"
ROLE = "arn:aws:iam::123456789012:role/sluice"
FAST = ["--emr-step-pending-seconds", "0.3", "--emr-step-seconds", "0.5", "--transition-seconds", "0.3"]


class Server:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(LAUNCHER), "--port", "0", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("READY "), f"launcher said {line!r}"
        self.port = int(line.split()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def client(self, service: str, **config: Any) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(**config) if config else None)

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.endpoint + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read().decode()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode() or "null")

    def clock(self, **spec: Any) -> dict[str, Any]:
        """``freeze=True``, ``advance=S``, ``freeze=False`` (see the README)."""
        status, body = self.http("POST", "/_sluice/clock", spec)
        assert status == 200, (status, body)
        return body

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.wait()

    def wait(self) -> int:
        code = self.proc.wait(60)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe and not pipe.closed:
                pipe.close()
        return code


def wait_for(fetch: Callable[[], str], final: tuple[str, ...], timeout: float = 60) -> str:
    """Polls (with the clock running) until a final state and returns it. Only for what ends by
    itself: which states are seen on the way depends on the machine's speed, so tests that
    check the way freeze the clock and step it instead."""
    seen: list[str] = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = fetch()
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in final:
            return state
        time.sleep(0.05)
    raise AssertionError(f"no final state within {timeout}s: {seen}")


class LauncherTest(unittest.TestCase):
    server: Server

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server(*FAST)

    @classmethod
    def tearDownClass(cls) -> None:
        assert cls.server.stop() == 0

    def setUp(self) -> None:
        self.server.http("DELETE", "/_sluice/faults")
        # Every state here moves only when the test moves the clock.
        self.server.clock(freeze=True)
        self.addCleanup(self.server.clock, freeze=False)

    def steps(self, fetch: Callable[[], str], *advances: float) -> list[str]:
        """The state read now, then after each advance of the clock, in order."""
        seen = [fetch()]
        for seconds in advances:
            self.server.clock(advance=seconds)
            seen.append(fetch())
        return seen

    def cluster(self, keep_alive: bool = True, steps: list[dict[str, Any]] | None = None) -> str:
        emr = self.server.client("emr")
        return emr.run_job_flow(
            Name="c", ReleaseLabel="emr-6.15.0", JobFlowRole="r", ServiceRole="r", Steps=steps or [],
            Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                       "KeepJobFlowAliveWhenNoSteps": keep_alive},
        )["JobFlowId"]

    def test_emr_steps_progress_and_the_marker_fails_them(self) -> None:
        emr = self.server.client("emr")
        cid = self.cluster()

        def cluster_state() -> str:
            return emr.describe_cluster(ClusterId=cid)["Cluster"]["Status"]["State"]

        self.assertEqual(cluster_state(), "WAITING")
        ok, bad = emr.add_job_flow_steps(JobFlowId=cid, Steps=[
            {"Name": "ok", "ActionOnFailure": "CONTINUE", "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["a"]}},
            {"Name": "bad", "ActionOnFailure": "CONTINUE",
             "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["spark-submit", "s3://b/SLUICE_FAIL.py"]}},
        ])["StepIds"]
        self.assertEqual(cluster_state(), "RUNNING")

        def state(sid: str) -> str:
            return emr.describe_step(ClusterId=cid, StepId=sid)["Step"]["Status"]["State"]

        def both() -> str:
            return f"{state(ok)} {state(bad)}"

        # 0.3 s PENDING, then 0.5 s RUNNING, one step at a time (FAST).
        self.assertEqual(self.steps(both, 0.2, 0.2, 0.5, 0.5),
                         ["PENDING PENDING", "PENDING PENDING", "RUNNING PENDING", "COMPLETED RUNNING",
                          "COMPLETED FAILED"])
        status = emr.describe_step(ClusterId=cid, StepId=bad)["Step"]["Status"]
        self.assertIn("SLUICE_FAIL", status["FailureDetails"]["Reason"])
        self.assertIn("SLUICE_FAIL", status["FailureDetails"]["Message"])
        self.assertEqual(cluster_state(), "WAITING")
        listed = {s["Id"]: s["Status"]["State"] for s in emr.list_steps(ClusterId=cid)["Steps"]}
        self.assertEqual(listed, {ok: "COMPLETED", bad: "FAILED"})

        # Nobody reads while the clock moves: the steps ran all the same.
        later = emr.add_job_flow_steps(JobFlowId=cid, Steps=[
            {"Name": n, "ActionOnFailure": "CONTINUE", "HadoopJarStep": {"Jar": "x.jar"}} for n in ("c", "d")])["StepIds"]
        self.server.clock(advance=5)
        self.assertEqual([state(sid) for sid in later], ["COMPLETED", "COMPLETED"])

        with self.assertRaises(emr.exceptions.InvalidRequestException):
            emr.describe_step(ClusterId=cid, StepId="s-UNKNOWN")

        (sid,) = emr.add_job_flow_steps(JobFlowId=cid, Steps=[{"Name": "x", "HadoopJarStep": {"Jar": "x.jar"}}])["StepIds"]
        infos = emr.cancel_steps(ClusterId=cid, StepIds=[sid])["CancelStepsInfoList"]
        self.assertEqual(infos, [{"StepId": sid, "Status": "SUBMITTED"}])
        self.assertEqual(state(sid), "CANCELLED")

        emr.terminate_job_flows(JobFlowIds=[cid])
        status = emr.describe_cluster(ClusterId=cid)["Cluster"]["Status"]
        self.assertEqual((status["State"], status["StateChangeReason"]["Code"]), ("TERMINATED", "USER_REQUEST"))
        with self.assertRaises(emr.exceptions.ClientError) as caught:
            emr.add_job_flow_steps(JobFlowId=cid, Steps=[{"Name": "late", "HadoopJarStep": {"Jar": "x.jar"}}])
        self.assertEqual(caught.exception.response["Error"]["Code"], "ValidationException")

    def test_emr_auto_terminating_clusters(self) -> None:
        emr = self.server.client("emr")
        self.assertEqual(emr.describe_cluster(ClusterId=self.cluster(keep_alive=False))["Cluster"]["Status"]["State"],
                         "TERMINATED")
        done = self.cluster(keep_alive=False, steps=[{"Name": "s", "HadoopJarStep": {"Jar": "x.jar"}}])
        failing = self.cluster(keep_alive=False, steps=[
            {"Name": "SLUICE_FAIL", "ActionOnFailure": "TERMINATE_CLUSTER", "HadoopJarStep": {"Jar": "x.jar"}},
            {"Name": "next", "HadoopJarStep": {"Jar": "x.jar"}},
        ])

        def state(cid: str) -> str:
            return emr.describe_cluster(ClusterId=cid)["Cluster"]["Status"]["State"]

        self.assertEqual(self.steps(lambda: f"{state(done)} {state(failing)}", 1.0),
                         ["RUNNING RUNNING", "TERMINATED TERMINATED_WITH_ERRORS"])
        self.assertEqual(emr.describe_cluster(ClusterId=failing)["Cluster"]["Status"]["StateChangeReason"]["Code"],
                         "STEP_FAILURE")
        self.assertEqual(sorted(s["Status"]["State"] for s in emr.list_steps(ClusterId=failing)["Steps"]),
                         ["CANCELLED", "FAILED"])

    def test_athena_queries(self) -> None:
        athena = self.server.client("athena")
        status, _ = self.server.http("POST", "/moto-api/static/athena/query-results", {"results": [
            {"rows": [{"Data": [{"VarCharValue": "n"}]}, {"Data": [{"VarCharValue": "42"}]}],
             "column_info": [{"Name": "n", "Type": "integer"}]}]})
        self.assertEqual(status, 201)

        def run(sql: str) -> tuple[str, list[str], dict[str, Any]]:
            qid = athena.start_query_execution(QueryString=sql)["QueryExecutionId"]

            def state() -> str:
                return athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]["State"]

            # One state per 0.3 s (FAST); a held clock holds the state, however often it is read.
            states = self.steps(state, 0, 0.4, 0, 0.4)
            return qid, states, athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]

        qid, states, _ = run("SELECT 42 AS n")
        self.assertEqual(states, ["QUEUED", "QUEUED", "RUNNING", "RUNNING", "SUCCEEDED"])
        rows = athena.get_query_results(QueryExecutionId=qid)["ResultSet"]["Rows"]
        self.assertEqual(rows[1]["Data"][0]["VarCharValue"], "42")
        _, states, status = run("SELECT 'SLUICE_FAIL'")
        self.assertEqual(states, ["QUEUED", "QUEUED", "RUNNING", "RUNNING", "FAILED"])
        self.assertIn("SLUICE_FAIL", status["StateChangeReason"])
        with self.assertRaises(athena.exceptions.InvalidRequestException):
            athena.get_query_execution(QueryExecutionId="unknown")

    def test_glue_crawlers_and_job_runs(self) -> None:
        glue = self.server.client("glue")
        glue.create_database(DatabaseInput={"Name": "db"})
        for name, last in (("ok", "SUCCEEDED"), ("bad_SLUICE_FAIL", "FAILED")):
            glue.create_crawler(Name=name, Role="r", DatabaseName="db", Targets={"S3Targets": [{"Path": "s3://b/"}]})
            self.assertNotIn("LastCrawl", glue.get_crawler(Name=name)["Crawler"])
            glue.start_crawler(Name=name)
            self.assertEqual(self.steps(lambda: glue.get_crawler(Name=name)["Crawler"]["State"], 0, 0.4),  # noqa: B023
                             ["RUNNING", "RUNNING", "READY"])
            self.assertEqual(glue.get_crawler(Name=name)["Crawler"]["LastCrawl"]["Status"], last)
        for name, final in (("job", "SUCCEEDED"), ("job_SLUICE_FAIL", "FAILED")):
            glue.create_job(Name=name, Role="r", Command={"Name": "glueetl", "ScriptLocation": "s3://b/s.py"})
            rid = glue.start_job_run(JobName=name)["JobRunId"]
            states = self.steps(lambda: glue.get_job_run(JobName=name, RunId=rid)["JobRun"]["JobRunState"],  # noqa: B023
                                0.4, 0.4)
            self.assertEqual(states, ["STARTING", "RUNNING", final])

    def test_emr_serverless_job_runs(self) -> None:
        es = self.server.client("emr-serverless")
        app = es.create_application(name="a", releaseLabel="emr-6.15.0", type="SPARK")["applicationId"]
        for args, state in ((["x"], "SUCCESS"), (["--fail", "SLUICE_FAIL"], "FAILED")):
            run = es.start_job_run(applicationId=app, executionRoleArn=ROLE, name="r",
                                   jobDriver={"sparkSubmit": {"entryPoint": "s3://b/e.py", "entryPointArguments": args}})
            got = es.get_job_run(applicationId=app, jobRunId=run["jobRunId"])["jobRun"]
            self.assertEqual(got["state"], state)
            if state == "FAILED":
                self.assertIn("SLUICE_FAIL", got["stateDetails"])

    def test_throttling_is_retried_and_counted(self) -> None:
        emr = self.server.client("emr", retries={"mode": "standard", "max_attempts": 3})
        cid = self.cluster()
        status, fault = self.server.http("POST", "/_sluice/faults", {
            "service": "elasticmapreduce", "action": "DescribeCluster", "count": 2, "status": 400,
            "code": "ThrottlingException"})
        self.assertEqual((status, fault["remaining"]), (201, 2))
        emr.list_clusters()  # another action: not affected
        resp = emr.describe_cluster(ClusterId=cid)
        self.assertEqual(resp["ResponseMetadata"]["RetryAttempts"], 2)
        self.assertEqual(self.server.http("GET", "/_sluice/faults"), (200, {"faults": [], "served": 2}))

        no_retry = self.server.client("glue", retries={"total_max_attempts": 1})
        self.server.http("POST", "/_sluice/faults", {"service": "glue", "count": 1, "status": 500,
                                                      "code": "InternalServiceException"})
        with self.assertRaises(Exception) as caught:
            no_retry.get_crawlers()
        err = caught.exception.response  # type: ignore[attr-defined]
        self.assertEqual((err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]), ("InternalServiceException", 500))

    def test_s3_slowdown(self) -> None:
        s3 = self.server.client("s3", retries={"mode": "standard", "max_attempts": 3}, s3={"addressing_style": "path"})
        s3.create_bucket(Bucket="data")
        s3.put_object(Bucket="data", Key="raw/a.csv", Body=b"a\n")
        self.server.http("POST", "/_sluice/faults", {"service": "s3", "action": "HeadObject", "count": 1,
                                                      "status": 503, "code": "SlowDown"})
        self.server.http("POST", "/_sluice/faults", {"service": "s3", "action": "ListObjectsV2", "count": 2,
                                                      "status": 503, "code": "SlowDown"})
        self.assertEqual(s3.head_object(Bucket="data", Key="raw/a.csv")["ResponseMetadata"]["RetryAttempts"], 1)
        self.assertEqual(s3.list_objects_v2(Bucket="data")["ResponseMetadata"]["RetryAttempts"], 2)
        self.assertEqual(self.server.http("GET", "/_sluice/faults")[1]["served"], 3)
        no_retry = self.server.client("s3", retries={"total_max_attempts": 1}, s3={"addressing_style": "path"})
        self.server.http("POST", "/_sluice/faults", {"service": "s3", "count": 1, "status": 503, "code": "SlowDown"})
        with self.assertRaises(Exception) as caught:
            no_retry.get_object(Bucket="data", Key="raw/a.csv")
        self.assertEqual(caught.exception.response["Error"]["Code"], "SlowDown")  # type: ignore[attr-defined]

    def test_fault_api_rejects_bad_requests(self) -> None:
        self.assertEqual(self.server.http("POST", "/_sluice/faults", {"count": 1})[0], 400)
        self.assertEqual(self.server.http("POST", "/_sluice/faults", {"service": "s3", "count": 0})[0], 400)
        self.assertEqual(self.server.http("PUT", "/_sluice/faults", {})[0], 405)

    def test_clock_api(self) -> None:
        status, frozen = self.server.http("GET", "/_sluice/clock")
        self.assertEqual((status, frozen["frozen"]), (200, True))
        self.assertEqual(self.server.clock(advance=2.5)["now"], frozen["now"] + 2.5)
        self.assertEqual(self.server.http("GET", "/_sluice/clock")[1]["now"], frozen["now"] + 2.5)
        running = self.server.clock(freeze=False)
        self.assertFalse(running["frozen"])
        self.assertGreaterEqual(running["now"], frozen["now"] + 2.5, "it runs on from where it stood")
        self.server.clock(freeze=True)
        self.assertEqual(self.server.http("POST", "/_sluice/clock", {"advance": -1})[0], 400)
        self.assertEqual(self.server.http("POST", "/_sluice/clock", {"freeze": "yes"})[0], 400)
        self.assertEqual(self.server.http("DELETE", "/_sluice/clock")[0], 405)


class LifecycleTest(unittest.TestCase):
    def test_sigint_and_stdin_eof_stop_the_server(self) -> None:
        self.assertEqual(Server().stop(signal.SIGINT), 0)
        server = Server("--exit-on-stdin-eof")
        server.proc.stdin.close()  # type: ignore[union-attr]
        self.assertEqual(server.wait(), 0)

    def test_emr_serverless_and_cluster_clocks(self) -> None:
        server = Server("--emr-serverless-run-seconds", "0.6", "--emr-cluster-seconds", "0.6")
        try:
            server.clock(freeze=True)
            emr = server.client("emr")
            cid = emr.run_job_flow(Name="c", ReleaseLabel="emr-6.15.0", JobFlowRole="r", ServiceRole="r",
                                   Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                                              "KeepJobFlowAliveWhenNoSteps": True})["JobFlowId"]
            es = server.client("emr-serverless")
            app = es.create_application(name="a", releaseLabel="emr-6.15.0", type="SPARK")["applicationId"]
            run = es.start_job_run(applicationId=app, executionRoleArn=ROLE, name="r",
                                   jobDriver={"sparkSubmit": {"entryPoint": "s3://b/e.py"}})
            seen = []
            for advance in (0, 0.4, 0.4):
                server.clock(advance=advance)
                seen.append((emr.describe_cluster(ClusterId=cid)["Cluster"]["Status"]["State"],
                             es.get_job_run(applicationId=app, jobRunId=run["jobRunId"])["jobRun"]["state"]))
            self.assertEqual(seen, [("STARTING", "SUBMITTED"), ("BOOTSTRAPPING", "RUNNING"), ("WAITING", "SUCCESS")])

            # Let run again, the clock moves by itself.
            server.clock(freeze=False)
            again = es.start_job_run(applicationId=app, executionRoleArn=ROLE, name="r",
                                     jobDriver={"sparkSubmit": {"entryPoint": "s3://b/e.py"}})
            self.assertEqual(wait_for(lambda: es.get_job_run(applicationId=app, jobRunId=again["jobRunId"])["jobRun"]["state"],
                                      ("SUCCESS", "FAILED")), "SUCCESS")
        finally:
            self.assertEqual(server.stop(), 0)

    def test_credentials_are_checked_with_an_auth_count(self) -> None:
        server = Server("--initial-no-auth-action-count", "0")
        try:
            # Only keys made through moto's IAM would be valid: "testing" is a bad key.
            s3 = server.client("s3", retries={"total_max_attempts": 1}, s3={"addressing_style": "path"})
            with self.assertRaises(Exception) as caught:
                s3.list_objects_v2(Bucket="data")
            error = caught.exception.response["Error"]  # type: ignore[attr-defined]
            self.assertEqual(error["Code"], "InvalidAccessKeyId")
            for service, call in (("glue", lambda c: c.get_crawlers()),
                                  ("athena", lambda c: c.list_work_groups()),
                                  ("emr", lambda c: c.list_clusters()),
                                  ("emr-serverless", lambda c: c.list_applications())):
                client = server.client(service, retries={"total_max_attempts": 1})
                with self.assertRaises(Exception) as caught:
                    call(client)
                response = caught.exception.response  # type: ignore[attr-defined]
                # In the service's JSON protocol, with the code AWS uses there.
                self.assertEqual((response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]),
                                 ("UnrecognizedClientException", 403), service)
                self.assertIn("security token", response["Error"]["Message"])
            sts = server.client("sts", retries={"total_max_attempts": 1})
            with self.assertRaises(Exception) as caught:
                sts.get_caller_identity()
            self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidClientTokenId")  # type: ignore[attr-defined]
            # In the query protocol's own shape (boto3 reads moto's too; strict parsers do not).
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials

            raw = AWSRequest(method="POST", url=server.endpoint + "/", data="Action=GetCallerIdentity&Version=2011-06-15",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
            SigV4Auth(Credentials("testing", "testing"), "sts", "us-east-1").add_auth(raw)
            request = urllib.request.Request(raw.url, data=raw.body.encode() if isinstance(raw.body, str) else raw.body,
                                             headers=dict(raw.headers), method="POST")
            with self.assertRaises(urllib.error.HTTPError) as http_error:
                urllib.request.urlopen(request, timeout=30)
            body = http_error.exception.read().decode()
            self.assertEqual(http_error.exception.code, 403)
            self.assertIn("<ErrorResponse><Error>", body)
            self.assertIn("<Code>InvalidClientTokenId</Code>", body)
        finally:
            self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    unittest.main(verbosity=2)
