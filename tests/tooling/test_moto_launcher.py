#!/usr/bin/env python3
"""Self-test of moto_launcher.py: starts it as a child process, as the Rust tests do, and drives
it with boto3 (installed with moto). Run from anywhere with the project's venv:

    .venv/bin/python tests/tooling/test_moto_launcher.py

Plain unittest (no pytest needed); short timings through the launcher's flags."""

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

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.wait()

    def wait(self) -> int:
        code = self.proc.wait(15)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe and not pipe.closed:
                pipe.close()
        return code


def wait_for(fetch: Callable[[], str], final: tuple[str, ...], timeout: float = 15) -> list[str]:
    """Polls until a final state; returns the distinct states seen, in order."""
    seen: list[str] = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = fetch()
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in final:
            return seen
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
        self.assertEqual(emr.describe_cluster(ClusterId=cid)["Cluster"]["Status"]["State"], "WAITING")
        ok, bad = emr.add_job_flow_steps(JobFlowId=cid, Steps=[
            {"Name": "ok", "ActionOnFailure": "CONTINUE", "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["a"]}},
            {"Name": "bad", "ActionOnFailure": "CONTINUE",
             "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["spark-submit", "s3://b/SLUICE_FAIL.py"]}},
        ])["StepIds"]
        self.assertEqual(emr.describe_cluster(ClusterId=cid)["Cluster"]["Status"]["State"], "RUNNING")

        def state(sid: str) -> str:
            return emr.describe_step(ClusterId=cid, StepId=sid)["Step"]["Status"]["State"]

        self.assertEqual(wait_for(lambda: state(ok), ("COMPLETED", "FAILED")), ["PENDING", "RUNNING", "COMPLETED"])
        self.assertEqual(wait_for(lambda: state(bad), ("COMPLETED", "FAILED"))[-1], "FAILED")
        status = emr.describe_step(ClusterId=cid, StepId=bad)["Step"]["Status"]
        self.assertIn("SLUICE_FAIL", status["FailureDetails"]["Reason"])
        self.assertIn("SLUICE_FAIL", status["FailureDetails"]["Message"])
        self.assertEqual(emr.describe_cluster(ClusterId=cid)["Cluster"]["Status"]["State"], "WAITING")
        listed = {s["Id"]: s["Status"]["State"] for s in emr.list_steps(ClusterId=cid)["Steps"]}
        self.assertEqual(listed, {ok: "COMPLETED", bad: "FAILED"})

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

        self.assertEqual(wait_for(lambda: state(done), ("TERMINATED", "TERMINATED_WITH_ERRORS")), ["RUNNING", "TERMINATED"])
        self.assertEqual(wait_for(lambda: state(failing), ("TERMINATED", "TERMINATED_WITH_ERRORS"))[-1],
                         "TERMINATED_WITH_ERRORS")
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
            states = wait_for(lambda: athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]["State"],
                              ("SUCCEEDED", "FAILED", "CANCELLED"))
            return qid, states, athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]

        qid, states, _ = run("SELECT 42 AS n")
        self.assertEqual(states, ["QUEUED", "RUNNING", "SUCCEEDED"])
        rows = athena.get_query_results(QueryExecutionId=qid)["ResultSet"]["Rows"]
        self.assertEqual(rows[1]["Data"][0]["VarCharValue"], "42")
        _, states, status = run("SELECT 'SLUICE_FAIL'")
        self.assertEqual(states[-1], "FAILED")
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
            self.assertEqual(wait_for(lambda: glue.get_crawler(Name=name)["Crawler"]["State"], ("READY",)),  # noqa: B023
                             ["RUNNING", "READY"])
            self.assertEqual(glue.get_crawler(Name=name)["Crawler"]["LastCrawl"]["Status"], last)
        for name, final in (("job", "SUCCEEDED"), ("job_SLUICE_FAIL", "FAILED")):
            glue.create_job(Name=name, Role="r", Command={"Name": "glueetl", "ScriptLocation": "s3://b/s.py"})
            rid = glue.start_job_run(JobName=name)["JobRunId"]
            states = wait_for(lambda: glue.get_job_run(JobName=name, RunId=rid)["JobRun"]["JobRunState"],  # noqa: B023
                              ("SUCCEEDED", "FAILED"))
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


class LifecycleTest(unittest.TestCase):
    def test_sigint_and_stdin_eof_stop_the_server(self) -> None:
        self.assertEqual(Server().stop(signal.SIGINT), 0)
        server = Server("--exit-on-stdin-eof")
        server.proc.stdin.close()  # type: ignore[union-attr]
        self.assertEqual(server.wait(), 0)

    def test_emr_serverless_and_cluster_clocks(self) -> None:
        server = Server("--emr-serverless-run-seconds", "0.6", "--emr-cluster-seconds", "0.6")
        try:
            emr = server.client("emr")
            cid = emr.run_job_flow(Name="c", ReleaseLabel="emr-6.15.0", JobFlowRole="r", ServiceRole="r",
                                   Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                                              "KeepJobFlowAliveWhenNoSteps": True})["JobFlowId"]
            states = wait_for(lambda: emr.describe_cluster(ClusterId=cid)["Cluster"]["Status"]["State"], ("WAITING",))
            self.assertEqual(states, ["STARTING", "BOOTSTRAPPING", "WAITING"])
            es = server.client("emr-serverless")
            app = es.create_application(name="a", releaseLabel="emr-6.15.0", type="SPARK")["applicationId"]
            run = es.start_job_run(applicationId=app, executionRoleArn=ROLE, name="r",
                                   jobDriver={"sparkSubmit": {"entryPoint": "s3://b/e.py"}})
            states = wait_for(lambda: es.get_job_run(applicationId=app, jobRunId=run["jobRunId"])["jobRun"]["state"],
                              ("SUCCESS", "FAILED"))
            self.assertEqual(states, ["SUBMITTED", "RUNNING", "SUCCESS"])
        finally:
            self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    unittest.main(verbosity=2)
