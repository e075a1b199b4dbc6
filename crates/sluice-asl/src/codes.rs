//! The stable codes of the report: each approximation and rejection has one, named for what
//! it is about. They are documented in `docs/migrating-from-step-functions.md`; a code, once
//! published, keeps its meaning.

// Rejections: the DAG is not written (unless `--allow-partial`).
/// Not JSON, or not a state machine (no `States`, no `StartAt`, a `Next` to no state, ...).
pub const INVALID_MACHINE: &str = "invalid-machine";
/// A Choice state that is not a recognised polling loop.
pub const CHOICE: &str = "choice-not-polling-loop";
/// A Map state.
pub const MAP: &str = "map-state";
/// A `.waitForTaskToken` integration.
pub const TASK_TOKEN: &str = "wait-for-task-token";
/// An activity.
pub const ACTIVITY: &str = "activity";
/// Any other resource.
pub const UNSUPPORTED_RESOURCE: &str = "unsupported-resource";
/// A `...Path` field read at run time (`SecondsPath`, `TimestampPath`, `TimeoutSecondsPath`,
/// `ErrorPath`, `CausePath`, ...).
pub const DYNAMIC_PATH: &str = "dynamic-path";
/// JSONata (`QueryLanguage`, `Arguments`, `Output`).
pub const JSONATA: &str = "jsonata";
/// An intrinsic function other than `States.Format`.
pub const INTRINSIC: &str = "intrinsic-function";
/// A JSONPath that cannot be resolved statically.
pub const UNRESOLVED_PATH: &str = "unresolved-jsonpath";
/// A cycle that is not a polling loop.
pub const CYCLE: &str = "cycle";
/// A value from the state's input in a key Sluice reads literally (a number, a choice).
pub const DYNAMIC_VALUE: &str = "dynamic-value";
/// A request without a value the Sluice operator requires.
pub const MISSING_PARAMETER: &str = "missing-parameter";
/// A request value of the wrong type or not one of the allowed choices.
pub const INVALID_PARAMETER: &str = "invalid-parameter";
/// A state field Sluice has nothing for (`Assign`, `Credentials`, ...).
pub const UNSUPPORTED_FIELD: &str = "unsupported-field";
/// The written DAG does not validate (a converter bug: please report it).
pub const INVALID_DAG: &str = "invalid-dag";

// Approximations: the DAG is written; `--strict` refuses it.
/// Several retriers: one is carried.
pub const RETRY_SEVERAL: &str = "retry-several";
/// A retrier for some errors only: Sluice retries every failure.
pub const RETRY_ERRORS: &str = "retry-error-filter";
/// `MaxAttempts` over Sluice's limit of 1000 retries.
pub const RETRY_LIMIT: &str = "retry-max-attempts";
/// A `BackoffRate` other than 1 and 2.
pub const RETRY_BACKOFF: &str = "retry-backoff-rate";
/// `JitterStrategy: FULL`: Sluice's own jitter is at most a fifth of the delay.
pub const RETRY_JITTER: &str = "retry-jitter";
/// A Retry or TimeoutSeconds on a Parallel state.
pub const PARALLEL_FIELD: &str = "parallel-retry-timeout";
/// A catcher for some errors only: the handler runs on every failure.
pub const CATCH_ERRORS: &str = "catch-error-filter";
/// Several catchers with different handlers: each handler runs on any failure.
pub const CATCH_SEVERAL: &str = "catch-several";
/// A caught failure whose handler ends in success: the run still ends failed in Sluice.
pub const CAUGHT_FAILS_RUN: &str = "caught-failure-fails-run";
/// A state reached both normally and from a Catch (or after such a teardown).
pub const JOIN_AFTER_CATCH: &str = "join-after-catch";
/// A request-response integration: Sluice waits for the work to finish.
pub const NO_WAIT: &str = "no-wait-form";
/// Request keys Sluice's operator has no key for.
pub const PARAMETER_DROPPED: &str = "parameter-dropped";
/// `HeartbeatSeconds`.
pub const HEARTBEAT: &str = "heartbeat";
/// The machine's own `TimeoutSeconds`.
pub const MACHINE_TIMEOUT: &str = "machine-timeout";
/// A context object field with a near equivalent (`$$.Execution.StartTime` as `ts`).
pub const CONTEXT_OBJECT: &str = "context-object";

/// Every code, its level and what it means, for the documentation and its test.
pub const ALL: &[(&str, bool, &str)] = &[
    (INVALID_MACHINE, true, "not JSON, or not a valid state machine"),
    (CHOICE, true, "a Choice that is not a polling loop"),
    (MAP, true, "a Map state"),
    (TASK_TOKEN, true, "a .waitForTaskToken integration"),
    (ACTIVITY, true, "an activity"),
    (UNSUPPORTED_RESOURCE, true, "any other resource"),
    (DYNAMIC_PATH, true, "SecondsPath, TimestampPath, TimeoutSecondsPath, ErrorPath, CausePath"),
    (JSONATA, true, "JSONata"),
    (INTRINSIC, true, "an intrinsic function other than States.Format"),
    (UNRESOLVED_PATH, true, "a JSONPath that cannot be resolved statically"),
    (CYCLE, true, "a cycle that is not a polling loop"),
    (DYNAMIC_VALUE, true, "a value from the input in a key Sluice reads literally"),
    (MISSING_PARAMETER, true, "a value the operator requires is missing"),
    (INVALID_PARAMETER, true, "a request value of the wrong type"),
    (UNSUPPORTED_FIELD, true, "a state field Sluice has nothing for"),
    (INVALID_DAG, true, "the written DAG does not validate"),
    (RETRY_SEVERAL, false, "several retriers"),
    (RETRY_ERRORS, false, "a retrier for some errors only"),
    (RETRY_LIMIT, false, "MaxAttempts over 1000"),
    (RETRY_BACKOFF, false, "a BackoffRate other than 1 and 2"),
    (RETRY_JITTER, false, "JitterStrategy FULL"),
    (PARALLEL_FIELD, false, "Retry or TimeoutSeconds on a Parallel state"),
    (CATCH_ERRORS, false, "a catcher for some errors only"),
    (CATCH_SEVERAL, false, "several catchers"),
    (CAUGHT_FAILS_RUN, false, "a caught failure whose handler ends in success"),
    (JOIN_AFTER_CATCH, false, "a state reached normally and from a Catch"),
    (NO_WAIT, false, "a request-response integration that Sluice waits for"),
    (PARAMETER_DROPPED, false, "request keys with no Sluice key"),
    (HEARTBEAT, false, "HeartbeatSeconds"),
    (MACHINE_TIMEOUT, false, "the machine's TimeoutSeconds"),
    (CONTEXT_OBJECT, false, "$$.Execution.StartTime"),
];
