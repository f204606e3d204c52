//! Argo's retry decision (workflow/controller/operator.go `processNodeRetries`).

use std::time::Duration;

use crate::expr::{Expr, Val};
use crate::process::Attempt;
use crate::report::Phase;

/// Parsed retry strategy for one node.
#[derive(Debug, Clone)]
pub struct RetryPlan {
    pub limit: Option<u32>,
    /// Effective policy (`Always` when only an expression is given, else `OnFailure`).
    pub policy: String,
    pub expression: Option<Expr>,
    pub backoff: Option<Backoff>,
}

#[derive(Debug, Clone)]
pub struct Backoff {
    pub duration: Option<Duration>,
    pub factor: Option<u32>,
    pub max_duration: Option<Duration>,
    pub cap: Option<Duration>,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Retry(Duration),
    Stop(String),
}

/// Argo's retry decision (workflow/controller/operator.go processNodeRetries), for a node
/// that has made `attempts` attempts, the last one `last`, the first started `elapsed` ago.
pub fn decide_retry(
    plan: &RetryPlan,
    attempts: u32,
    last: &Attempt,
    elapsed: Duration,
    scale: f64,
) -> Decision {
    let scaled = |d: Duration| d.mul_f64(scale);
    let mut wait = Duration::ZERO;
    if let Some(b) = &plan.backoff {
        let max = b.max_duration.map(scaled);
        if let Some(m) = max
            && elapsed > m
        {
            return Decision::Stop("Max duration limit exceeded".into());
        }
        let Some(base) = b.duration else {
            return Decision::Stop("no base duration specified for retryStrategy.backoff".into());
        };
        wait = base;
        if let Some(f) = b.factor.filter(|f| *f > 0) {
            wait = base.mul_f64(f64::from(f).powi(attempts.saturating_sub(1) as i32));
        }
        if let Some(c) = b.cap
            && wait > c
        {
            wait = c;
        }
        wait = scaled(wait);
        if let Some(m) = max
            && elapsed + wait > m
        {
            return Decision::Stop("Backoff would exceed max duration limit".into());
        }
    }
    let (on_failed, on_error) = match plan.policy.as_str() {
        "Always" => (true, true),
        "OnError" => (false, true),
        // Local processes have no Kubernetes transient errors; only Error phases qualify.
        "OnTransientError" => (false, true),
        _ => (true, false),
    };
    if (last.phase == Phase::Failed && !on_failed) || (last.phase == Phase::Error && !on_error) {
        return Decision::Stop(last.message.clone());
    }
    if let Some(l) = plan.limit
        && attempts > l
    {
        return Decision::Stop("No more retries left".into());
    }
    if let Some(e) = &plan.expression {
        let code = last.exit_code.map_or("-1".to_string(), |c| c.to_string());
        let env = |i: &str| -> Option<Val> {
            Some(Val::Str(match i {
                "lastRetry.exitCode" => code.clone(),
                "lastRetry.status" => last.phase.as_str().to_string(),
                "lastRetry.duration" => format!("{}", last.duration.as_secs()),
                "lastRetry.message" => last.message.clone(),
                _ => return None,
            }))
        };
        match e.eval_bool(&env) {
            Ok(true) => {}
            Ok(false) => {
                return Decision::Stop("retryStrategy.expression evaluated to false".into());
            }
            Err(err) => return Decision::Stop(format!("retryStrategy.expression: {err}")),
        }
    }
    Decision::Retry(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr;

    fn attempt(phase: Phase, code: i32) -> Attempt {
        Attempt {
            phase,
            exit_code: Some(code),
            message: format!("exit code {code}"),
            stdout: String::new(),
            duration: Duration::from_millis(10),
            pid: None,
        }
    }

    fn plan(limit: u32, expr_src: Option<&str>, policy: Option<&str>) -> RetryPlan {
        let expression = expr_src.map(|e| expr::parse(e, false).unwrap());
        RetryPlan {
            limit: Some(limit),
            policy: policy.map(str::to_string).unwrap_or_else(|| {
                if expression.is_some() {
                    "Always".into()
                } else {
                    "OnFailure".into()
                }
            }),
            expression,
            backoff: Some(Backoff {
                duration: Some(Duration::from_secs(30)),
                factor: Some(2),
                max_duration: Some(Duration::from_secs(600)),
                cap: None,
            }),
        }
    }

    #[test]
    fn retry_decisions_follow_argo() {
        let p = plan(
            3,
            Some("asInt(lastRetry.exitCode) == 75 || lastRetry.status == \"Error\""),
            None,
        );
        let d = decide_retry(&p, 1, &attempt(Phase::Failed, 75), Duration::ZERO, 1.0);
        assert_eq!(d, Decision::Retry(Duration::from_secs(30)));
        let d = decide_retry(&p, 3, &attempt(Phase::Failed, 75), Duration::ZERO, 1.0);
        assert_eq!(d, Decision::Retry(Duration::from_secs(120)));
        let d = decide_retry(&p, 4, &attempt(Phase::Failed, 75), Duration::ZERO, 1.0);
        assert_eq!(d, Decision::Stop("No more retries left".into()));
        let d = decide_retry(&p, 1, &attempt(Phase::Failed, 1), Duration::ZERO, 1.0);
        assert_eq!(
            d,
            Decision::Stop("retryStrategy.expression evaluated to false".into())
        );
        // maxDuration: 590s elapsed + 30s wait > 600s
        let d = decide_retry(
            &p,
            1,
            &attempt(Phase::Failed, 75),
            Duration::from_secs(590),
            1.0,
        );
        assert_eq!(
            d,
            Decision::Stop("Backoff would exceed max duration limit".into())
        );
        // scale shrinks waits
        let d = decide_retry(&p, 2, &attempt(Phase::Failed, 75), Duration::ZERO, 0.001);
        assert_eq!(d, Decision::Retry(Duration::from_millis(60)));
        // OnError policy does not retry Failed
        let p = plan(3, None, Some("OnError"));
        assert!(matches!(
            decide_retry(&p, 1, &attempt(Phase::Failed, 75), Duration::ZERO, 1.0),
            Decision::Stop(_)
        ));
    }
}
