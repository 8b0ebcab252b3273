//! The lifecycle as a table: one row per case (the run's state, the event, the effects).

use super::*;
use JobStatus as S;
use QueueRow::{Done, Live, Waiting};

/// `jobs`: (name, status, queue row); `needs`: (job, upstream, accepted statuses).
fn run(
    status: Option<RunStatus>,
    jobs: &[(&str, JobStatus, QueueRow)],
    needs: &[(&str, &str, &[JobStatus])],
) -> Run {
    Run {
        status,
        jobs: jobs
            .iter()
            .map(|(n, s, q)| {
                (
                    n.to_string(),
                    Job {
                        id: format!("id-{n}"),
                        status: *s,
                        queue: *q,
                        steps: BTreeMap::new(),
                    },
                )
            })
            .collect(),
        needs: needs
            .iter()
            .map(|(j, u, on)| NeedsEdge {
                job: j.to_string(),
                upstream: u.to_string(),
                run_on: on.to_vec(),
            })
            .collect(),
    }
}

/// `run` with step `step` of `job` recorded as `status`.
fn with_step(mut run: Run, job: &str, step: i32, status: &str) -> Run {
    if let Some(j) = run.jobs.get_mut(job) {
        j.steps.insert(step, status.to_owned());
    }
    run
}

fn claimed(job: &str) -> Event {
    Event::Claimed {
        job: job.into(),
        agent: "agent-1".into(),
    }
}

fn job_claimed(job: &str) -> Effect {
    Effect::JobClaimed {
        job: job.into(),
        agent: "agent-1".into(),
    }
}

fn step(job: &str, step: i32, status: &str) -> Event {
    Event::StepChanged {
        job: job.into(),
        step,
        status: status.into(),
    }
}

fn step_changed(job: &str, step: i32, status: &str) -> Effect {
    Effect::StepChanged {
        job: job.into(),
        step,
        status: status.into(),
    }
}

fn started(job: &str) -> Event {
    Event::Started { job: job.into() }
}

fn ended(job: &str, status: JobStatus) -> Event {
    Event::Ended {
        job: job.into(),
        status,
    }
}

fn job_ended(job: &str, status: JobStatus) -> Effect {
    Effect::JobEnded {
        job: job.into(),
        status,
    }
}

fn queue(job: &str) -> Effect {
    Effect::Queue { job: job.into() }
}

fn skip(job: &str) -> Effect {
    Effect::Skip { job: job.into() }
}

fn run_ended(status: RunStatus) -> Effect {
    Effect::RunEnded { status }
}

const OK: &[JobStatus] = &[S::Success];
const ALWAYS: &[JobStatus] = &[S::Success, S::Failed, S::Cancelled, S::Skipped];
const ON_FAILURE: &[JobStatus] = &[S::Failed];

struct Case {
    name: &'static str,
    run: Run,
    event: Event,
    effects: Vec<Effect>,
}

fn cases() -> Vec<Case> {
    use RunStatus as R;
    let pending = Some(R::Pending);
    let running = Some(R::Running);
    vec![
        Case {
            name: "a new run queues the jobs without needs, the others wait",
            run: run(
                pending,
                &[
                    ("build", S::Pending, Waiting),
                    ("lint", S::Pending, Waiting),
                    ("test", S::Pending, Waiting),
                ],
                &[("test", "build", OK)],
            ),
            event: Event::Created,
            effects: vec![queue("build"), queue("lint")],
        },
        Case {
            name: "a claim holds the job (no status changes)",
            run: Run::claimed("build", "id-build"),
            event: claimed("build"),
            effects: vec![job_claimed("build")],
        },
        Case {
            name: "a claim decided from the claimed row alone names the claimed job only",
            run: Run::claimed("build", "id-build"),
            event: claimed("test"),
            effects: vec![],
        },
        Case {
            name: "a job whose queue row is not live is not held",
            run: run(running, &[("a", S::Pending, Waiting)], &[]),
            event: claimed("a"),
            effects: vec![],
        },
        Case {
            name: "a finished job is not held",
            run: run(running, &[("a", S::Cancelled, Live)], &[]),
            event: claimed("a"),
            effects: vec![],
        },
        Case {
            name: "a step not recorded yet is recorded",
            run: run(running, &[("a", S::Running, Live)], &[]),
            event: step("a", 0, "running"),
            effects: vec![step_changed("a", 0, "running")],
        },
        Case {
            name: "a running step ends",
            run: with_step(
                run(running, &[("a", S::Running, Live)], &[]),
                "a",
                0,
                "running",
            ),
            event: step("a", 0, "success"),
            effects: vec![step_changed("a", 0, "success")],
        },
        Case {
            name: "a pending step starts",
            run: with_step(
                run(running, &[("a", S::Running, Live)], &[]),
                "a",
                2,
                "pending",
            ),
            event: step("a", 2, "running"),
            effects: vec![step_changed("a", 2, "running")],
        },
        Case {
            name: "an identical step report again is a replay",
            run: with_step(
                run(running, &[("a", S::Running, Live)], &[]),
                "a",
                0,
                "running",
            ),
            event: step("a", 0, "running"),
            effects: vec![],
        },
        Case {
            name: "a replay of a step's end is a no-op",
            run: with_step(
                run(running, &[("a", S::Running, Live)], &[]),
                "a",
                1,
                "failed",
            ),
            event: step("a", 1, "failed"),
            effects: vec![],
        },
        Case {
            name: "a finished step never goes back to running",
            run: with_step(
                run(running, &[("a", S::Running, Live)], &[]),
                "a",
                0,
                "success",
            ),
            event: step("a", 0, "running"),
            effects: vec![],
        },
        Case {
            name: "a finished step keeps its first end",
            run: with_step(
                run(running, &[("a", S::Failed, Done)], &[]),
                "a",
                0,
                "cancelled",
            ),
            event: step("a", 0, "success"),
            effects: vec![],
        },
        Case {
            name: "other steps of the job are not in the way",
            run: with_step(
                run(running, &[("a", S::Running, Live)], &[]),
                "a",
                0,
                "success",
            ),
            event: step("a", 1, "running"),
            effects: vec![step_changed("a", 1, "running")],
        },
        Case {
            name: "a step of an unknown job changes nothing",
            run: run(running, &[("a", S::Running, Live)], &[]),
            event: step("zz", 0, "running"),
            effects: vec![],
        },
        Case {
            name: "first running starts the job and its pending run",
            run: run(pending, &[("build", S::Pending, Live)], &[]),
            event: started("build"),
            effects: vec![
                Effect::JobStarted {
                    job: "build".into(),
                },
                Effect::RunStarted,
            ],
        },
        Case {
            name: "a second job starting leaves the running run alone",
            run: run(
                running,
                &[("a", S::Running, Live), ("b", S::Pending, Live)],
                &[],
            ),
            event: started("b"),
            effects: vec![Effect::JobStarted { job: "b".into() }],
        },
        Case {
            name: "running again (after a reconnect) changes nothing",
            run: run(running, &[("a", S::Running, Live)], &[]),
            event: started("a"),
            effects: vec![],
        },
        Case {
            name: "a finished job never starts again",
            run: run(running, &[("a", S::Success, Done)], &[]),
            event: started("a"),
            effects: vec![],
        },
        Case {
            name: "the last job ending ends the run",
            run: run(running, &[("a", S::Running, Done)], &[]),
            event: ended("a", S::Success),
            effects: vec![job_ended("a", S::Success), run_ended(R::Success)],
        },
        Case {
            name: "a job ending while another still runs",
            run: run(
                running,
                &[("a", S::Running, Done), ("b", S::Running, Live)],
                &[],
            ),
            event: ended("a", S::Failed),
            effects: vec![job_ended("a", S::Failed)],
        },
        Case {
            name: "all terminal but a queue row still live: the run waits",
            run: run(running, &[("a", S::Running, Live)], &[]),
            event: ended("a", S::TimedOutStale),
            effects: vec![job_ended("a", S::TimedOutStale)],
        },
        Case {
            name: "a replay of the recorded end is a no-op",
            run: run(running, &[("a", S::Success, Done)], &[]),
            event: ended("a", S::Success),
            effects: vec![],
        },
        Case {
            name: "terminal states are final: another end is ignored",
            run: run(running, &[("a", S::Success, Done)], &[]),
            event: ended("a", S::Failed),
            effects: vec![],
        },
        Case {
            name: "an unknown job changes nothing",
            run: run(running, &[("a", S::Running, Live)], &[]),
            event: ended("zz", S::Failed),
            effects: vec![],
        },
        Case {
            name: "a non-terminal status is not an end",
            run: run(running, &[("a", S::Running, Live)], &[]),
            event: ended("a", S::Cancelling),
            effects: vec![],
        },
        Case {
            name: "needs met: the downstream job is queued",
            run: run(
                running,
                &[("build", S::Running, Done), ("test", S::Pending, Waiting)],
                &[("test", "build", OK)],
            ),
            event: ended("build", S::Success),
            effects: vec![job_ended("build", S::Success), queue("test")],
        },
        Case {
            name: "needs failed: the downstream job is skipped and the run ends failed",
            run: run(
                running,
                &[("build", S::Running, Done), ("test", S::Pending, Waiting)],
                &[("test", "build", OK)],
            ),
            event: ended("build", S::Failed),
            effects: vec![
                job_ended("build", S::Failed),
                skip("test"),
                job_ended("test", S::Skipped),
                run_ended(R::Failed),
            ],
        },
        Case {
            name: "skips cascade down a chain",
            run: run(
                running,
                &[
                    ("a", S::Running, Done),
                    ("b", S::Pending, Waiting),
                    ("c", S::Pending, Waiting),
                ],
                &[("b", "a", OK), ("c", "b", OK)],
            ),
            event: ended("a", S::Cancelled),
            effects: vec![
                job_ended("a", S::Cancelled),
                skip("b"),
                job_ended("b", S::Skipped),
                skip("c"),
                job_ended("c", S::Skipped),
                run_ended(R::Cancelled),
            ],
        },
        Case {
            name: "a cascade stops at a job that accepts skipped upstreams",
            run: run(
                running,
                &[
                    ("a", S::Running, Done),
                    ("b", S::Pending, Waiting),
                    ("notify", S::Pending, Waiting),
                ],
                &[("b", "a", OK), ("notify", "b", ALWAYS)],
            ),
            event: ended("a", S::Failed),
            effects: vec![
                job_ended("a", S::Failed),
                queue("notify"),
                skip("b"),
                job_ended("b", S::Skipped),
            ],
        },
        Case {
            name: "an on-failure job runs when its upstream failed",
            run: run(
                running,
                &[("build", S::Running, Done), ("alert", S::Pending, Waiting)],
                &[("alert", "build", ON_FAILURE)],
            ),
            event: ended("build", S::Failed),
            effects: vec![job_ended("build", S::Failed), queue("alert")],
        },
        Case {
            name: "an on-failure job is skipped when its upstream succeeded: the run succeeds",
            run: run(
                running,
                &[("build", S::Running, Done), ("alert", S::Pending, Waiting)],
                &[("alert", "build", ON_FAILURE)],
            ),
            event: ended("build", S::Success),
            effects: vec![
                job_ended("build", S::Success),
                skip("alert"),
                job_ended("alert", S::Skipped),
                run_ended(R::Success),
            ],
        },
        Case {
            name: "a job waiting on two upstreams waits for both",
            run: run(
                running,
                &[
                    ("a", S::Running, Done),
                    ("b", S::Running, Live),
                    ("c", S::Pending, Waiting),
                ],
                &[("c", "a", OK), ("c", "b", OK)],
            ),
            event: ended("a", S::Success),
            effects: vec![job_ended("a", S::Success)],
        },
        Case {
            name: "an already queued downstream job is not queued twice",
            run: run(
                running,
                &[
                    ("a", S::Success, Done),
                    ("b", S::Running, Done),
                    ("c", S::Pending, Live),
                ],
                &[("c", "a", OK)],
            ),
            event: ended("b", S::Success),
            effects: vec![job_ended("b", S::Success)],
        },
        Case {
            name: "cancelling a waiting job ends it (its row can never be dispatched)",
            run: run(
                Some(R::Running),
                &[("a", S::Success, Done), ("b", S::Pending, Waiting)],
                &[("b", "a", &[S::Failed])],
            ),
            event: ended("b", S::Cancelled),
            effects: vec![job_ended("b", S::Cancelled), run_ended(R::Cancelled)],
        },
        Case {
            name: "a cancelling run (status outside RunStatus) still ends",
            run: run(None, &[("a", S::Running, Done)], &[]),
            event: ended("a", S::Cancelled),
            effects: vec![job_ended("a", S::Cancelled), run_ended(R::Cancelled)],
        },
        Case {
            name: "a run already ended is not ended again",
            run: run(Some(R::Failed), &[("a", S::Pending, Done)], &[]),
            event: ended("a", S::Skipped),
            effects: vec![job_ended("a", S::Skipped)],
        },
        Case {
            name: "drift dropped fails the run",
            run: run(
                running,
                &[("a", S::Success, Done), ("b", S::Queued, Done)],
                &[],
            ),
            event: ended("b", S::DriftDropped),
            effects: vec![job_ended("b", S::DriftDropped), run_ended(R::Failed)],
        },
    ]
}

#[test]
fn the_lifecycle_table() {
    let mut failures = Vec::new();
    for case in cases() {
        let got = apply(&case.run, &case.event);
        if got != case.effects {
            failures.push(format!(
                "{}:\n  expected {:?}\n  got      {:?}",
                case.name, case.effects, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn queue_rows_from_their_status() {
    assert_eq!(QueueRow::from_status(Some("waiting")), Waiting);
    for live in ["pending", "dispatched", "recovering"] {
        assert_eq!(QueueRow::from_status(Some(live)), Live);
    }
    for done in ["completed", "failed", "cancelled", "skipped", "expired"] {
        assert_eq!(QueueRow::from_status(Some(done)), Done);
    }
    assert_eq!(QueueRow::from_status(None), Done);
}
