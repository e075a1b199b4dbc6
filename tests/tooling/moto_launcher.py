#!/usr/bin/env python3
"""Start moto's AWS emulator (server mode) for Sluice's AWS tests, with a few additions.

Usage (from the workspace root, after the venv is set up; see tests/tooling/README.md):

    .venv/bin/python tests/tooling/moto_launcher.py --port 0

It serves moto's real backends on one loopback port, prints exactly one line ``READY <port>``
on stdout once the socket is listening, and runs until SIGTERM or SIGINT (exit status 0).
Nothing else is ever written to stdout (moto's own prints go to stderr), so a parent may read
that one line and then ignore the pipe.

What this file adds to moto, all in-process and all listed in the README:

* EMR steps move PENDING -> RUNNING -> COMPLETED on a clock (moto leaves them RUNNING or
  PENDING for ever), computed lazily from each step's creation time whenever clusters or steps
  are read: no background thread. Clusters follow their steps (RUNNING while a step is active,
  then WAITING, or TERMINATED for auto-terminating clusters). ``CancelSteps`` is implemented
  (moto lacks it) and ``DescribeStep`` of an unknown step fails as AWS does. Glue's
  ``BatchStopJobRun`` is implemented (moto lacks it).
* Failure injection by the marker ``SLUICE_FAIL`` in an EMR step, an Athena query, an EMR
  Serverless job run, a Glue crawler name, a Glue job run or a Lambda invocation.
* Lambda runs on moto's docker-free backend (``lambda.use_docker`` false), which refuses unknown
  functions as AWS does.
* Glue's ``LastCrawl`` reports AWS's values (SUCCEEDED / FAILED / CANCELLED, finished crawls
  only) instead of moto's crawl states (COMPLETED, RUNNING).
* Throttling / server-error injection: ``POST /_sluice/faults`` makes the next N matching
  requests fail with a well-formed AWS error of the service's protocol (WSGI middleware).
* Glue crawls, Glue job runs and Athena queries advance on a timer through moto's own state
  manager (``--transition-seconds``, default 1).
* One emulator clock for everything that advances by itself (EMR steps and clusters, EMR
  Serverless job runs, moto's state-manager models): ``POST /_sluice/clock`` freezes it, moves
  it forward and lets it run again, so a test can hold a state until it says so.
* With ``--initial-no-auth-action-count N``, moto checks credentials (after N free requests),
  and its authentication errors are answered in the service's own protocol, as AWS does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

MARKER = "SLUICE_FAIL"
FAULTS_PATH = "/_sluice/faults"  # "_" is not allowed in S3 bucket names: no clash with S3.
CLOCK_PATH = "/_sluice/clock"


def contains_marker(*values: Any) -> bool:
    """True when any string inside ``values`` (walking dicts and lists) holds the marker."""
    for value in values:
        if isinstance(value, str):
            if MARKER in value:
                return True
        elif isinstance(value, Mapping):
            if contains_marker(*value.keys(), *value.values()):
                return True
        elif isinstance(value, (list, tuple)):
            if contains_marker(*value):
                return True
    return False


def utc(epoch: float) -> datetime:
    """A naive UTC datetime, as moto stores its timestamps."""
    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)


# --------------------------------------------------------------------------------------------
# The emulator clock.
# --------------------------------------------------------------------------------------------


class Clock:
    """The time every lazy progression reads: the EMR clock, EMR Serverless job runs and moto's
    state-manager models (``time`` progressions). It runs with the wall clock until frozen;
    frozen, it stands still (so does every state that would move with it) until moved forward
    by hand or let run again, from where it stood."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.offset = 0.0  # added to time.time() while running
        self.frozen_at: float | None = None

    def now(self) -> float:
        with self.lock:
            return self.frozen_at if self.frozen_at is not None else time.time() + self.offset

    def control(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``{"freeze": true}``, ``{"advance": S}``, ``{"freeze": false}``, or several at once
        (applied in that order)."""
        freeze = spec.get("freeze")
        advance = spec.get("advance")
        if freeze is not None and not isinstance(freeze, bool):
            raise ValueError("`freeze` must be true or false")
        if advance is not None and (isinstance(advance, bool) or not isinstance(advance, (int, float))
                                    or advance < 0):
            raise ValueError("`advance` must be a number of seconds, 0 or more")
        with self.lock:
            if freeze is True and self.frozen_at is None:
                self.frozen_at = time.time() + self.offset
            if advance:
                if self.frozen_at is not None:
                    self.frozen_at += float(advance)
                else:
                    self.offset += float(advance)
            if freeze is False and self.frozen_at is not None:
                self.offset = self.frozen_at - time.time()
                self.frozen_at = None
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        return {"now": self.now(), "frozen": self.frozen_at is not None}


CLOCK = Clock()


def patch_state_manager(clock: Clock) -> None:
    """moto's state manager reads ``datetime.now()`` for ``time`` progressions: the emulator
    clock instead."""
    from moto.moto_api._internal import managed_state_model

    class EmulatorDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime.fromtimestamp(clock.now(), tz)

    managed_state_model.datetime = EmulatorDatetime  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# EMR: steps on a clock, clusters that follow them, CancelSteps.
# --------------------------------------------------------------------------------------------

STEP_TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED")
CLUSTER_TERMINAL = ("TERMINATED", "TERMINATED_WITH_ERRORS")
# ActionOnFailure values after which the steps still queued are cancelled.
BLOCKING_ACTIONS = ("TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW", "CANCEL_AND_WAIT")


class EmrClock:
    """Lazy EMR progression. Every step records its creation instant; a cluster's steps run one
    at a time in creation order: a step is PENDING for ``pending`` seconds after its creation
    (and for as long as an earlier step is active), then RUNNING for ``running`` seconds, then
    COMPLETED, or FAILED when it carries the marker. ``advance`` recomputes all of that from
    the clock; states that became terminal are frozen, so later calls never rewrite them."""

    def __init__(self, cluster_seconds: float, pending: float, running: float) -> None:
        self.cluster_seconds = cluster_seconds
        self.pending = pending
        self.running = running
        self.lock = threading.RLock()

    @staticmethod
    def finish(step: Any, state: str, at: float, reason: str | None = None) -> None:
        step.state = state
        step.end_date_time = utc(at)
        step._sluice_end = at
        if reason:
            step.last_state_change_reason = reason

    def advance(self, cluster: Any, now: float | None = None) -> None:
        now = CLOCK.now() if now is None else now
        steps = sorted(cluster.steps, key=lambda s: s._sluice_t0)
        if cluster.state in CLUSTER_TERMINAL:
            # Terminated (by request, or earlier by this clock): nothing runs any more.
            end = getattr(cluster, "_sluice_end", now)
            for step in steps:
                if step.state not in STEP_TERMINAL:
                    self.finish(step, "CANCELLED", end, "Cancelled because the cluster terminated.")
            return

        t0 = cluster._sluice_t0
        ready_at = t0 + self.cluster_seconds
        if now < ready_at:
            cluster.state = "STARTING" if now < t0 + self.cluster_seconds / 2 else "BOOTSTRAPPING"
            cluster.ready_datetime = None
            for step in steps:
                step.state = "PENDING"
            return
        cluster.ready_datetime = utc(ready_at)

        free_at = ready_at  # when the step runner is next free (inf: busy)
        blocked_at: float | None = None  # a blocking failure cancels the steps queued before it
        terminate_at: float | None = None
        for step in steps:
            if step.state in STEP_TERMINAL and hasattr(step, "_sluice_end"):
                end = step._sluice_end
                if step.state == "FAILED" and step.action_on_failure in BLOCKING_ACTIONS:
                    blocked_at = end
                free_at = max(free_at, end) if free_at != float("inf") else free_at
                continue
            if blocked_at is not None and step._sluice_t0 <= blocked_at:
                self.finish(step, "CANCELLED", blocked_at, "Cancelled because an earlier step failed.")
                continue
            start = max(step._sluice_t0 + self.pending, free_at)
            if now < start:
                step.state = "PENDING"
                step.start_date_time = None
                free_at = float("inf")
                continue
            step.start_date_time = utc(start)
            end = start + self.running
            if now < end:
                step.state = "RUNNING"
                free_at = float("inf")
                continue
            free_at = end
            if step._sluice_fail:
                self.finish(step, "FAILED", end, f"Step failed: it carries the {MARKER} marker.")
                if step.action_on_failure in BLOCKING_ACTIONS:
                    blocked_at = end
                    terminated = step.action_on_failure != "CANCEL_AND_WAIT"
                    if terminated and not cluster.termination_protected:
                        terminate_at = end
            else:
                self.finish(step, "COMPLETED", end)

        if terminate_at is not None:
            self.terminate(cluster, "TERMINATED_WITH_ERRORS", terminate_at, "STEP_FAILURE",
                           "Shut down as step failed")
            self.advance(cluster, now)  # cancels what was still queued
        elif any(s.state in ("PENDING", "RUNNING") for s in steps):
            cluster.state = "RUNNING"
            cluster.last_state_change_reason = "Running step"
            cluster._sluice_reason_code = None
        elif not cluster.keep_job_flow_alive_when_no_steps and not cluster.termination_protected:
            done = max([ready_at] + [getattr(s, "_sluice_end", ready_at) for s in steps])
            self.terminate(cluster, "TERMINATED", done, "ALL_STEPS_COMPLETED", "Steps completed")
        else:
            cluster.state = "WAITING"
            cluster.last_state_change_reason = "Cluster ready to run steps."
            cluster._sluice_reason_code = None

    @staticmethod
    def terminate(cluster: Any, state: str, at: float, code: str, message: str) -> None:
        cluster.state = state
        cluster.end_datetime = utc(at)
        cluster._sluice_end = at
        cluster._sluice_reason_code = code
        cluster.last_state_change_reason = message


def patch_emr(clock: EmrClock) -> None:
    from moto.emr import models as emr
    from moto.emr.exceptions import InvalidCluster, InvalidRequestException, ValidationException
    from moto.emr.responses import ElasticMapReduceResponse
    from moto.core.responses import ActionResult

    # Every step and cluster remembers when it was created (epoch seconds) and whether it
    # carries the failure marker (in its name, jar, main class, args or properties).
    step_init = emr.Step.__init__

    def step_init_patched(self: Any, *args: Any, **kwargs: Any) -> None:
        self._sluice_t0 = CLOCK.now()
        step_init(self, *args, **kwargs)
        self._sluice_fail = contains_marker(self.name, self.hadoop_jar_step)

    emr.Step.__init__ = step_init_patched

    cluster_init = emr.Cluster.__init__

    def cluster_init_patched(self: Any, *args: Any, **kwargs: Any) -> None:
        self._sluice_t0 = CLOCK.now()
        self._sluice_reason_code = None
        cluster_init(self, *args, **kwargs)

    emr.Cluster.__init__ = cluster_init_patched

    # moto terminates a cluster without steps at creation (unless kept alive) and reports
    # WAITING otherwise; the clock decides instead (same outcome once the cluster is ready).
    def run_bootstrap_actions(self: Any) -> None:
        self.state = "WAITING"

    emr.Cluster.run_bootstrap_actions = run_bootstrap_actions

    # Status with the state-change code AWS sends, and FailureDetails for failed steps.
    cluster_status = emr.Cluster.status.fget

    def cluster_status_patched(self: Any) -> dict[str, Any]:
        status = cluster_status(self)
        if getattr(self, "_sluice_reason_code", None):
            status["StateChangeReason"]["Code"] = self._sluice_reason_code
        return status

    emr.Cluster.status = property(cluster_status_patched)

    step_status = emr.Step.status.fget

    def step_status_patched(self: Any) -> dict[str, Any]:
        status = step_status(self)
        if self.state == "FAILED":
            status["FailureDetails"] = {
                "Reason": f"{MARKER} marker",
                "Message": f"The step {self.name!r} carries the {MARKER} marker "
                "(injected by Sluice's moto launcher).",
                "LogFile": f"s3://sluice-moto-logs/steps/{self.id}/stderr.gz",
            }
        return status

    emr.Step.status = property(step_status_patched)

    # Advance every cluster of the backend before each call that reads or changes them.
    backend_cls = emr.ElasticMapReduceBackend

    def advancing(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            with clock.lock:
                now = CLOCK.now()
                for cluster in list(self.clusters.values()):
                    clock.advance(cluster, now)
                return method(self, *args, **kwargs)

        wrapper.__name__ = method.__name__
        return wrapper

    for name in ("describe_cluster", "list_clusters", "describe_job_flows", "list_steps",
                 "add_job_flow_steps", "list_instance_groups", "list_instances"):
        setattr(backend_cls, name, advancing(getattr(backend_cls, name)))

    def known_cluster(self: Any, cluster_id: str) -> Any:
        if cluster_id not in self.clusters:
            raise InvalidCluster(cluster_id)
        return self.clusters[cluster_id]

    def describe_step(self: Any, cluster_id: str, step_id: str) -> Any:
        # moto answers 200 with no Step for an unknown id; AWS answers this error.
        for step in known_cluster(self, cluster_id).steps:
            if step.id == step_id:
                return step
        raise InvalidRequestException(f"Step id '{step_id}' is not valid.")

    backend_cls.describe_step = advancing(describe_step)

    list_steps = backend_cls.list_steps

    def list_steps_checked(self: Any, cluster_id: str, *args: Any, **kwargs: Any) -> Any:
        known_cluster(self, cluster_id)
        return list_steps(self, cluster_id, *args, **kwargs)

    backend_cls.list_steps = list_steps_checked

    add_steps = backend_cls.add_job_flow_steps

    def add_job_flow_steps(self: Any, job_flow_id: str, steps: list[dict[str, Any]]) -> Any:
        cluster = known_cluster(self, job_flow_id)
        if cluster.state in CLUSTER_TERMINAL:  # moto would queue them on a dead cluster
            raise ValidationException("A job flow that is shutting down, terminated, or finished may not be modified.")
        return add_steps(self, job_flow_id, steps)

    backend_cls.add_job_flow_steps = advancing(add_job_flow_steps)

    terminate = backend_cls.terminate_job_flows

    def terminate_job_flows(self: Any, job_flow_ids: list[str]) -> Any:
        for cid in job_flow_ids:
            known_cluster(self, cid)
        terminated = terminate(self, job_flow_ids)
        now = CLOCK.now()
        for cluster in terminated:
            cluster._sluice_end = now
            cluster._sluice_reason_code = "USER_REQUEST"
            cluster.last_state_change_reason = "Terminated by user request"
            clock.advance(cluster, now)  # cancels the steps that were still active
        return terminated

    backend_cls.terminate_job_flows = advancing(terminate_job_flows)

    def cancel_steps(self: Any, cluster_id: str, step_ids: list[str]) -> list[dict[str, str]]:
        """CancelSteps (moto has none): a PENDING or RUNNING step becomes CANCELLED now."""
        cluster = known_cluster(self, cluster_id)
        by_id = {s.id: s for s in cluster.steps}
        now = CLOCK.now()
        infos = []
        for sid in step_ids:
            step = by_id.get(sid)
            if step is None:
                infos.append({"StepId": sid, "Status": "FAILED",
                              "Reason": f"Step id '{sid}' is not valid."})
            elif step.state in STEP_TERMINAL:
                infos.append({"StepId": sid, "Status": "FAILED",
                              "Reason": f"Step is in state {step.state}: it cannot be cancelled."})
            else:
                EmrClock.finish(step, "CANCELLED", now, "Cancelled by user request.")
                infos.append({"StepId": sid, "Status": "SUBMITTED"})
        return infos

    backend_cls.cancel_steps = advancing(cancel_steps)

    def cancel_steps_response(self: Any) -> Any:
        cluster_id = self._get_param("ClusterId")
        step_ids = self._get_param("StepIds", [])
        return ActionResult({"CancelStepsInfoList": self.backend.cancel_steps(cluster_id, step_ids)})

    ElasticMapReduceResponse.cancel_steps = cancel_steps_response


# --------------------------------------------------------------------------------------------
# Athena: marker queries end FAILED with a reason.
# --------------------------------------------------------------------------------------------


def patch_athena() -> None:
    from moto.athena import models as athena
    from moto.core.exceptions import JsonRESTError
    from moto.athena.responses import AthenaResponse

    start = athena.AthenaBackend.start_query_execution

    def start_query_execution(self: Any, query: str, *args: Any, **kwargs: Any) -> str:
        exec_id = start(self, query, *args, **kwargs)
        if contains_marker(query):
            # Same path through moto's state manager, ending FAILED instead of SUCCEEDED.
            self.executions[exec_id]._transitions = [("QUEUED", "RUNNING"), ("RUNNING", "FAILED")]
        return exec_id

    athena.AthenaBackend.start_query_execution = start_query_execution

    get = athena.AthenaBackend.get_query_execution

    def get_query_execution(self: Any, exec_id: str) -> Any:
        if exec_id not in self.executions:  # moto: KeyError, a 500
            raise JsonRESTError("InvalidRequestException", f"QueryExecution {exec_id} was not found")
        return get(self, exec_id)

    athena.AthenaBackend.get_query_execution = get_query_execution

    respond = AthenaResponse.get_query_execution

    def get_query_execution_response(self: Any) -> str:
        body = json.loads(respond(self))
        status = body["QueryExecution"]["Status"]
        if status["State"] == "FAILED":
            message = f"Query failed: it carries the {MARKER} marker (injected by Sluice's moto launcher)."
            status["StateChangeReason"] = message
            status["AthenaError"] = {"ErrorCategory": 2, "ErrorType": 1000, "Retryable": False,
                                     "ErrorMessage": message}
        elif status["State"] == "CANCELLED":
            status["StateChangeReason"] = "Query cancelled by user"
        return json.dumps(body)

    AthenaResponse.get_query_execution = get_query_execution_response

    # AWS's idempotency: a StartQueryExecution whose ClientRequestToken was seen before answers
    # the execution that token started (moto starts a new one each time).
    start_response = AthenaResponse.start_query_execution

    def start_query_execution_idempotent(self: Any) -> Any:
        token = self._get_param("ClientRequestToken")
        seen = self.athena_backend.__dict__.setdefault("_sluice_tokens", {})
        if token and token in seen:
            return json.dumps({"QueryExecutionId": seen[token]})
        answer = start_response(self)
        if token and isinstance(answer, str):
            seen[token] = json.loads(answer)["QueryExecutionId"]
        return answer

    AthenaResponse.start_query_execution = start_query_execution_idempotent


# --------------------------------------------------------------------------------------------
# Glue: LastCrawl as AWS reports it; marker crawlers and job runs fail.
# --------------------------------------------------------------------------------------------

# moto crawl state -> AWS LastCrawlInfo.Status. RUNNING is not a finished crawl.
LAST_CRAWL_STATUS = {"COMPLETED": "SUCCEEDED", "FAILED": "FAILED", "STOPPED": "CANCELLED"}


def patch_glue() -> None:
    from moto.glue import models as glue

    start_crawler = glue.FakeCrawler.start_crawler

    def start_crawler_patched(self: Any) -> None:
        start_crawler(self)
        if contains_marker(self.name):
            self.crawls[-1]._transitions = [("RUNNING", "FAILED"), ("STOPPING", "STOPPED")]

    glue.FakeCrawler.start_crawler = start_crawler_patched

    as_dict = glue.FakeCrawler.as_dict

    def crawler_as_dict(self: Any) -> dict[str, Any]:
        data = as_dict(self)
        data.pop("LastCrawl", None)
        # AWS's LastCrawl describes the last *finished* crawl, with SUCCEEDED/FAILED/CANCELLED.
        for crawl in reversed(self.crawls):
            status = LAST_CRAWL_STATUS.get(crawl.status)
            if status is None:
                continue
            data["LastCrawl"] = {
                "Status": status,
                "LogGroup": crawl.log_group,
                "LogStream": crawl.log_stream,
                "MessagePrefix": crawl.message_prefix,
                "StartTime": crawl.start_time,
            }
            if status == "FAILED":
                data["LastCrawl"]["ErrorMessage"] = (
                    f"Crawl failed: the crawler carries the {MARKER} marker "
                    "(injected by Sluice's moto launcher)."
                )
            break
        return data

    glue.FakeCrawler.as_dict = crawler_as_dict

    job_run_init = glue.FakeJobRun.__init__

    def job_run_init_patched(self: Any, job_name: str, *args: Any, **kwargs: Any) -> None:
        job_run_init(self, job_name, *args, **kwargs)
        if contains_marker(job_name, self.arguments):
            self._transitions = [("STARTING", "RUNNING"), ("RUNNING", "FAILED")]

    glue.FakeJobRun.__init__ = job_run_init_patched

    job_run_as_dict = glue.FakeJobRun.as_dict

    def job_run_as_dict_patched(self: Any) -> dict[str, Any]:
        data = job_run_as_dict(self)
        if data.get("JobRunState") == "FAILED":
            data["ErrorMessage"] = (
                f"Job run failed: it carries the {MARKER} marker (injected by Sluice's moto launcher)."
            )
        return data

    glue.FakeJobRun.as_dict = job_run_as_dict_patched

    from moto.core.responses import ActionResult
    from moto.glue.responses import GlueResponse

    def batch_stop_job_run(self: Any) -> Any:
        """BatchStopJobRun (moto has none): a STARTING, RUNNING or WAITING run goes STOPPING,
        then STOPPED on the next reads; any other run is an error entry, as in AWS."""
        name = self._get_param("JobName")
        job = self.glue_backend.get_job(name)
        by_id = {r.job_run_id: r for r in job.job_runs}
        stopped, errors = [], []
        for run_id in self._get_param("JobRunIds", []):
            run = by_id.get(run_id)
            if run is None or run.status not in ("STARTING", "RUNNING", "WAITING"):
                detail = "not found" if run is None else f"in state {run.status}"
                errors.append({"JobName": name, "JobRunId": run_id, "ErrorDetail": {
                    "ErrorCode": "InvalidInputException", "ErrorMessage": f"Job run {run_id} is {detail}"}})
                continue
            run._transitions = [("STOPPING", "STOPPED")]
            run.status = "STOPPING"
            stopped.append({"JobName": name, "JobRunId": run_id})
        return ActionResult({"SuccessfulSubmissions": stopped, "Errors": errors})

    GlueResponse.batch_stop_job_run = batch_stop_job_run


# --------------------------------------------------------------------------------------------
# Lambda: moto's docker-free backend; an unknown function is refused; marker invocations fail.
# --------------------------------------------------------------------------------------------

def patch_lambda() -> None:
    from moto.awslambda_simple import models as simple
    from moto.core.models import default_user_config

    # No docker daemon here: moto's "simple" Lambda answers each invocation with the next
    # queued result (POST /moto-api/static/lambda-simple/response) or else the request's payload.
    default_user_config.setdefault("lambda", {})["use_docker"] = False
    invoke = simple.LambdaSimpleBackend.invoke

    def invoke_patched(self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any,
                       response_headers: Any) -> Any:
        # As AWS: an unknown function (or version, alias) is ResourceNotFoundException.
        self.get_function(function_name, qualifier)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        if contains_marker(function_name, text):
            # What AWS answers for a function that raised: FunctionError and its error payload.
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({
                "errorType": "SluiceInjectedError",
                "errorMessage": f"the invocation carries the {MARKER} marker (injected by Sluice's moto launcher)",
                "stackTrace": [],
            }).encode("utf-8")
        return invoke(self, function_name, qualifier, body, headers, response_headers)

    simple.LambdaSimpleBackend.invoke = invoke_patched


# --------------------------------------------------------------------------------------------
# EMR Serverless: optional clock, marker job runs fail.
# --------------------------------------------------------------------------------------------


def patch_emr_serverless(run_seconds: float) -> None:
    from moto.emrserverless import models as emrs

    init = emrs.JobRun.__init__

    def job_run_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)  # sets self.state = "SUCCESS" through the property below
        self._sluice_t0 = CLOCK.now()
        self._sluice_state = None  # an explicit state (CancelJobRun) wins over the clock
        self._sluice_fail = contains_marker(self.name, self.job_driver)

    def get_state(self: Any) -> str:
        explicit = getattr(self, "_sluice_state", None)
        if explicit is not None or not hasattr(self, "_sluice_t0"):
            return explicit or "SUCCESS"
        elapsed = CLOCK.now() - self._sluice_t0
        if elapsed < run_seconds / 2:
            return "SUBMITTED"
        if elapsed < run_seconds:
            return "RUNNING"
        return "FAILED" if self._sluice_fail else "SUCCESS"

    def set_state(self: Any, value: str) -> None:
        if hasattr(self, "_sluice_t0"):  # after __init__: an explicit change (cancel)
            self._sluice_state = value

    def get_details(self: Any) -> str | None:
        if self.state == "FAILED":
            return f"Job run failed: it carries the {MARKER} marker (injected by Sluice's moto launcher)."
        if self.state == "CANCELLED":
            return "Job run cancelled by user."
        return None

    emrs.JobRun.__init__ = job_run_init
    emrs.JobRun.state = property(get_state, set_state)

    # AWS's idempotency: a StartJobRun whose clientToken was seen before (on that application)
    # answers the job run that token started (moto starts a new one each time).
    start = emrs.EMRServerlessBackend.start_job_run

    def start_job_run_idempotent(self: Any, application_id: str, client_token: str, *args: Any,
                                 **kwargs: Any) -> Any:
        seen = self.__dict__.setdefault("_sluice_tokens", {})
        key = (application_id, client_token)
        if client_token and key in seen:
            return seen[key]
        job_run = start(self, application_id, client_token, *args, **kwargs)
        if client_token:
            seen[key] = job_run
        return job_run

    emrs.EMRServerlessBackend.start_job_run = start_job_run_idempotent
    emrs.JobRun.state_details = property(get_details, lambda self, value: None)


# --------------------------------------------------------------------------------------------
# Fault injection: a WSGI middleware in front of moto.
# --------------------------------------------------------------------------------------------

# Signing name (credential scope) -> botocore service name, where they differ.
BOTOCORE_NAMES = {"elasticmapreduce": "emr"}
# Friendly names accepted in POST /_sluice/faults -> signing name.
SERVICE_ALIASES = {"emr": "elasticmapreduce", "emrserverless": "emr-serverless"}
DEFAULT_MESSAGES = {
    "ThrottlingException": "Rate exceeded",
    "Throttling": "Rate exceeded",
    "SlowDown": "Please reduce your request rate.",
    "ServiceUnavailable": "Service is unable to handle request.",
    "InternalError": "We encountered an internal error. Please try again.",
    "InternalServerError": "Internal server error",
    "InternalServerException": "Internal server error",
}


class ServiceModels:
    """The protocol of a service and the operation a REST request is, read off botocore's
    service models (installed with moto)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cache: dict[str, Any] = {}

    def _load(self, signing_name: str) -> Any:
        with self.lock:
            if signing_name not in self.cache:
                try:
                    import botocore.session

                    session = botocore.session.get_session()
                    model = session.get_service_model(BOTOCORE_NAMES.get(signing_name, signing_name))
                    routes = []
                    for op_name in model.operation_names:
                        http = model.operation_model(op_name).http
                        routes.append((op_name, http.get("method", "POST"), *route(http.get("requestUri", "/"))))
                    self.cache[signing_name] = (model.metadata.get("protocol", "json"),
                                                model.metadata.get("jsonVersion", "1.1"), routes)
                except Exception:  # unknown service: answer in JSON, match actions by target only
                    self.cache[signing_name] = ("json", "1.1", [])
            return self.cache[signing_name]

    def protocol(self, signing_name: str) -> tuple[str, str]:
        protocol, json_version, _ = self._load(signing_name)
        return protocol, json_version

    def operation(self, signing_name: str, method: str, path: str, query: dict[str, str]) -> str | None:
        _, _, routes = self._load(signing_name)
        best, best_score = None, -1
        for op_name, op_method, regex, literals, score in routes:
            if op_method != method or not regex.fullmatch(path):
                continue
            ok = True
            for key, value in literals:
                if key == "x-id" and key not in query:
                    continue  # the SDKs send it, but it is not needed to tell operations apart
                if key not in query or (value is not None and query[key] != value):
                    ok = False
            if ok and score > best_score:
                best, best_score = op_name, score
        return best


def route(request_uri: str) -> tuple[re.Pattern[str], list[tuple[str, str | None]], int]:
    """A botocore requestUri ("/{Bucket}/{Key+}?x-id=GetObject") as a path regex, the query
    literals it requires, and a specificity score (more literals: more specific)."""
    path, _, query = request_uri.partition("?")
    pattern = ""
    literal_chars = 0
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("+}"):
            pattern += ".+"
        elif part.startswith("{"):
            pattern += "[^/]+"
        else:
            pattern += re.escape(part)
            literal_chars += len(part)
    literals: list[tuple[str, str | None]] = []
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        literals.append((key, value if eq else None))
    return re.compile(pattern.rstrip("/") + "/?"), literals, 1000 * len(literals) + literal_chars


class Faults:
    """The queue behind ``/_sluice/faults``. A fault matches a request by service (signing
    name) and, optionally, operation name; each match consumes one of its ``count``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: list[dict[str, Any]] = []
        self.served = 0
        self.next_id = 1

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(spec.get("service"), str) or not spec["service"]:
            raise ValueError("`service` is required: the signing name, e.g. elasticmapreduce, glue, "
                             "athena, emr-serverless, s3")
        code = spec.get("code") or "ThrottlingException"
        fault = {
            "service": SERVICE_ALIASES.get(spec["service"].lower(), spec["service"].lower()),
            "action": spec.get("action") or None,
            "count": int(spec.get("count", 1)),
            "status": int(spec.get("status") or (503 if code == "SlowDown" else 400)),
            "code": code,
            "message": spec.get("message") or DEFAULT_MESSAGES.get(code, code),
        }
        if fault["count"] < 1 or not 400 <= fault["status"] <= 599:
            raise ValueError("`count` must be >= 1 and `status` within 400..599")
        with self.lock:
            fault["id"] = self.next_id
            fault["remaining"] = fault["count"]
            fault["served"] = 0
            self.next_id += 1
            self.faults.append(fault)
            return dict(fault)

    def take(self, service: str, action: str | None) -> dict[str, Any] | None:
        with self.lock:
            for fault in self.faults:
                if fault["service"] != service:
                    continue
                if fault["action"] is not None and fault["action"] != action:
                    continue
                fault["remaining"] -= 1
                fault["served"] += 1
                self.served += 1
                if fault["remaining"] == 0:
                    self.faults.remove(fault)
                return dict(fault)
        return None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"faults": [dict(f) for f in self.faults], "served": self.served}

    def clear(self) -> dict[str, Any]:
        with self.lock:
            self.faults.clear()
            self.served = 0
            return {"faults": [], "served": 0}


def signing_service(environ: dict[str, Any]) -> str | None:
    """The service of a SigV4-signed request: Credential=KEY/DATE/REGION/SERVICE/aws4_request."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    match = re.search(r"Credential=[^/,\s]+/[^/]+/[^/]+/([^/]+)/aws4_request", auth)
    return match.group(1).lower() if match else None


def parse_query(query_string: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(query_string, keep_blank_values=True))


class SluiceMiddleware:
    """Serves ``/_sluice/faults`` and answers matching AWS requests with injected errors;
    everything else goes to moto untouched."""

    def __init__(self, app: Callable[..., Iterable[bytes]], faults: Faults, log: bool,
                 auth: bool = False) -> None:
        self.app = app
        self.faults = faults
        self.models = ServiceModels()
        self.log = log
        self.auth = auth

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.rstrip("/") == FAULTS_PATH:
            return self.faults_api(environ, start_response)
        if path.rstrip("/") == CLOCK_PATH:
            return self.clock_api(environ, start_response)
        service = signing_service(environ)
        if service and self.faults.faults:  # unlocked peek: only a fast path
            action = self.action(service, environ)
            fault = self.faults.take(service, action)
            if fault is not None:
                if self.log:
                    print(f"sluice: injected {fault['status']} {fault['code']} into {service} {action}",
                          file=sys.stderr, flush=True)
                drain(environ)
                return self.error(service, fault, environ, start_response)
        if self.auth and service:
            return self.with_auth_errors_in_protocol(service, environ, start_response)
        return self.app(environ, start_response)

    def with_auth_errors_in_protocol(self, service: str, environ: dict[str, Any],
                                     start_response: Callable[..., Any]) -> Iterable[bytes]:
        """moto answers a failed credential check in one XML shape whatever the service
        (``<ErrorResponse><Errors><Error>``, which only lenient parsers read); it is re-encoded
        as AWS answers in the service's protocol, with AWS's JSON names for the codes in the
        JSON protocols. S3 (REST-XML) is left alone: moto answers it as S3 does."""
        protocol, _ = self.models.protocol(service)
        if protocol not in ("json", "rest-json", "query"):
            return self.app(environ, start_response)
        seen: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            seen["status"], seen["headers"], seen["exc_info"] = status, headers, exc_info
            return lambda data: None  # write(): moto's apps return their body instead

        body = b"".join(self.app(environ, capture))
        status = seen["status"]
        match = None
        if status.startswith(("401", "403")) and body.lstrip().startswith(b"<"):
            match = re.search(rb"<Code>([^<]+)</Code>\s*<Message>([^<]*)</Message>", body)
        if match is None:
            start_response(status, seen["headers"], seen["exc_info"])
            return [body]
        code = match.group(1).decode()
        if protocol != "query":
            code = JSON_AUTH_CODES.get(code, code)
        message = xml_unescape(match.group(2).decode())
        fault = {"status": int(status.split()[0]), "code": code, "message": message}
        return self.error(service, fault, environ, start_response)

    def action(self, service: str, environ: dict[str, Any]) -> str | None:
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:  # JSON protocols: "ElasticMapReduce.DescribeCluster"
            return target.rsplit(".", 1)[-1]
        return self.models.operation(service, environ.get("REQUEST_METHOD", "GET"),
                                     environ.get("PATH_INFO", "/"),
                                     parse_query(environ.get("QUERY_STRING", "")))

    def error(self, service: str, fault: dict[str, Any], environ: dict[str, Any],
              start_response: Callable[..., Any]) -> Iterable[bytes]:
        protocol, json_version = self.models.protocol(service)
        request_id = str(uuid.uuid4())
        code, message = fault["code"], fault["message"]
        status = f"{fault['status']} {STATUS_TEXT.get(fault['status'], 'Error')}"
        if protocol == "rest-xml":  # S3
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    f"<Error><Code>{xml_escape(code)}</Code><Message>{xml_escape(message)}</Message>"
                    f"<RequestId>{request_id}</RequestId><HostId>sluice-moto</HostId></Error>")
            headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id),
                       ("x-amz-id-2", "sluice-moto")]
        elif protocol in ("query", "ec2"):
            kind = "Sender" if fault["status"] < 500 else "Receiver"
            body = (f"<ErrorResponse><Error><Type>{kind}</Type><Code>{xml_escape(code)}</Code>"
                    f"<Message>{xml_escape(message)}</Message></Error>"
                    f"<RequestId>{request_id}</RequestId></ErrorResponse>")
            headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
        else:  # json (awsJson1_0 / 1_1) and rest-json
            content_type = ("application/json" if protocol == "rest-json"
                            else f"application/x-amz-json-{json_version}")
            body = json.dumps({"__type": code, "message": message})
            headers = [("Content-Type", content_type), ("x-amzn-ErrorType", code),
                       ("x-amzn-RequestId", request_id)]
        data = body.encode("utf-8")
        headers.append(("Content-Length", str(len(data))))
        start_response(status, headers)
        return [data]

    def clock_api(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        status = "200 OK"
        try:
            if method == "GET":
                result: Any = CLOCK.snapshot()
            elif method == "POST":
                spec = json.loads(drain(environ) or b"{}")
                if not isinstance(spec, dict):
                    raise ValueError("the body must be a JSON object")
                result = CLOCK.control(spec)
            else:
                status, result = "405 Method Not Allowed", {"error": "use GET or POST"}
        except (ValueError, TypeError) as e:
            status, result = "400 Bad Request", {"error": str(e)}
        data = json.dumps(result).encode("utf-8")
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def faults_api(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        status = "200 OK"
        try:
            if method == "GET":
                result: Any = self.faults.snapshot()
            elif method == "POST":
                spec = json.loads(drain(environ) or b"{}")
                if not isinstance(spec, dict):
                    raise ValueError("the body must be a JSON object")
                result = self.faults.add(spec)
                status = "201 Created"
            elif method == "DELETE":
                result = self.faults.clear()
            else:
                status, result = "405 Method Not Allowed", {"error": "use GET, POST or DELETE"}
        except (ValueError, TypeError) as e:
            status, result = "400 Bad Request", {"error": str(e)}
        data = json.dumps(result).encode("utf-8")
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


STATUS_TEXT = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
               500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
               504: "Gateway Timeout"}


def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")


# moto's credential-check codes (those of the query protocol) -> the codes AWS's JSON-protocol
# services answer with.
JSON_AUTH_CODES = {
    "InvalidClientTokenId": "UnrecognizedClientException",
    "SignatureDoesNotMatch": "InvalidSignatureException",
    "AccessDenied": "AccessDeniedException",
}


def drain(environ: dict[str, Any]) -> bytes:
    """Read the request body, so that a keep-alive connection stays in step."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if environ.get("wsgi.input_terminated"):
        return stream.read()
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return stream.read(length) if length > 0 else b""


# --------------------------------------------------------------------------------------------
# Startup.
# --------------------------------------------------------------------------------------------

TRANSITION_MODELS = ("glue::crawl", "glue::job_run", "athena::execution")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default 0)")
    p.add_argument("--emr-step-pending-seconds", type=float, default=1.0, metavar="S",
                   help="how long a new EMR step stays PENDING (default 1)")
    p.add_argument("--emr-step-seconds", type=float, default=2.0, metavar="S",
                   help="how long an EMR step stays RUNNING before COMPLETED/FAILED (default 2)")
    p.add_argument("--emr-cluster-seconds", type=float, default=0.0, metavar="S",
                   help="how long a new EMR cluster is STARTING/BOOTSTRAPPING before WAITING "
                   "(default 0: ready at once, as in moto)")
    p.add_argument("--emr-serverless-run-seconds", type=float, default=0.0, metavar="S",
                   help="how long an EMR Serverless job run is SUBMITTED then RUNNING before "
                   "SUCCESS/FAILED (default 0: finished at once, as in moto)")
    p.add_argument("--transition-seconds", type=float, default=1.0, metavar="S",
                   help="moto state-manager time progression for glue::crawl, glue::job_run and "
                   "athena::execution: one state step per S seconds (default 1; 0 leaves moto's "
                   "default, which finishes them at once)")
    p.add_argument("--initial-no-auth-action-count", type=int, default=None, metavar="N",
                   help="check credentials as moto's IAM does after the first N requests (moto's "
                   "INITIAL_NO_AUTH_ACTION_COUNT; default: never). 0: from the first request; only "
                   "access keys made through moto's IAM are valid then")
    p.add_argument("--log-requests", action="store_true",
                   help="log every request (and every injected fault) to stderr")
    p.add_argument("--exit-on-stdin-eof", action="store_true",
                   help="also stop when stdin closes, so that the server dies with a parent that "
                   "holds the other end of a pipe (even after kill -9)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    if args.initial_no_auth_action_count is not None:
        # Read by moto.settings at import.
        os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(args.initial_no_auth_action_count)

    from werkzeug.serving import make_server

    from moto.moto_api import state_manager
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    patch_state_manager(CLOCK)
    patch_emr(EmrClock(args.emr_cluster_seconds, args.emr_step_pending_seconds, args.emr_step_seconds))
    patch_athena()
    patch_glue()
    patch_lambda()
    patch_emr_serverless(args.emr_serverless_run_seconds)
    if args.transition_seconds > 0:
        for model in TRANSITION_MODELS:
            state_manager.set_transition(model, {"progression": "time", "seconds": args.transition_seconds})

    class Handler(MotoRequestHandler):
        def log_request(self, *a: Any, **kw: Any) -> None:
            if args.log_requests:
                super().log_request(*a, **kw)

    app = SluiceMiddleware(DomainDispatcherApplication(create_backend_app), Faults(), args.log_requests,
                           auth=args.initial_no_auth_action_count is not None)
    server = make_server(args.host, args.port, app, threaded=True, request_handler=Handler)
    port = server.server_address[1]
    os.environ["MOTO_PORT"] = str(port)  # as moto's own server sets it (used to build some URLs)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.exit_on_stdin_eof:
        def watch_stdin() -> None:
            while sys.stdin.buffer.read(4096):
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    # The socket listens since make_server: requests are accepted from now on.
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    # Nothing else may reach stdout (a parent may stop reading it): moto's prints go to stderr.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr

    while not stop.wait(0.5):
        if not thread.is_alive():
            return 1
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
