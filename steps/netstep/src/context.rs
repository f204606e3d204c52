//! The run context every step builds first: validated flags, the run's intent (from the state
//! snapshot, so every step of a run and every resubmission sees the same revision), the state
//! store, the ARM client, and the record written last.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tracing::{info, warn};

use crate::arm::{ArmClient, Credential};
use crate::error::{Error, ExitStatus, Result};
use crate::intent::{self, Intent};
use crate::plan::Plan;
use crate::state::{LockGuard, SnapshotOutcome, StateStore, Status, StepRecord};
use crate::step::{CommonArgs, Mode, Outcome};

/// Everything a step needs to run.
pub struct StepContext {
    /// The step's name (`tag-groups`, ...).
    pub step: &'static str,
    /// The shared flags.
    pub args: CommonArgs,
    /// The run key (`local` when running without a state store).
    pub run_key: String,
    /// The run's intent.
    pub intent: Intent,
    /// `sha256:<hex>` of the intent's canonical form.
    pub intent_digest: String,
    /// The state store, when `--state` is given.
    pub store: Option<StateStore>,
    /// The ARM client.
    pub arm: ArmClient,
    /// When the step started.
    pub started_at: OffsetDateTime,
    /// Whether this invocation created the run's intent snapshot.
    pub snapshot_created: bool,
}

/// How long a step waits for the network lease held by another pipeline before giving up (75).
pub const LOCK_WAIT: Duration = Duration::from_secs(600);
/// The lease duration; it is renewed while the step works.
pub const LOCK_TTL: Duration = Duration::from_secs(60);
/// Environment variable overriding [`LOCK_WAIT`] (whole seconds, 0 = try once).
pub const LOCK_WAIT_ENV: &str = "NETSTEP_LOCK_WAIT_S";
/// Environment variable overriding [`LOCK_TTL`] (whole seconds, 1-3600; Azure Blob clamps the
/// lease to 15-60 s).
pub const LOCK_TTL_ENV: &str = "NETSTEP_LOCK_TTL_S";

/// A duration in whole seconds from `name`, `default` when unset or empty; a value that is not
/// an integer in `min..=max` is a usage error (exit 2).
fn env_secs(name: &str, default: Duration, min: u64, max: u64) -> Result<Duration> {
    parse_secs(name, std::env::var(name).ok(), default, min, max)
}

fn parse_secs(
    name: &str,
    value: Option<String>,
    default: Duration,
    min: u64,
    max: u64,
) -> Result<Duration> {
    match value {
        Some(v) if !v.trim().is_empty() => match v.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Duration::from_secs(n)),
            _ => Err(Error::Usage(format!(
                "{name}={v:?}: expected whole seconds between {min} and {max}"
            ))),
        },
        _ => Ok(default),
    }
}

/// This host as waiters see it: `HOSTNAME` (the pod name under Argo), else the kernel's
/// hostname, else `unknown-host`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

impl StepContext {
    /// Validates the flags, opens the state store, loads the run's intent and builds the ARM
    /// client. Nothing is written to Azure; the only state write is the run's intent snapshot
    /// (created once per run key, never overwritten).
    pub async fn init(step: &'static str, args: CommonArgs) -> Result<Self> {
        let started_at = OffsetDateTime::now_utc();
        if args.intent.is_none() && args.state.is_none() {
            return Err(Error::Usage(
                "give --intent PATH, or --state URL and --run-key KEY to use the run's snapshot"
                    .into(),
            ));
        }
        if args.state.is_some() && args.run_key.is_none() {
            return Err(Error::Usage(
                "--state needs --run-key (git SHA + pipeline)".into(),
            ));
        }
        // Validate the intent file before touching the state store: bad input writes nothing.
        let from_file = match &args.intent {
            Some(p) => Some(intent::load_file(p)?),
            None => None,
        };
        let store = match &args.state {
            Some(url) => Some(StateStore::open(url, state_credential(url)?).await?),
            None => None,
        };
        let run_key = args.run_key.clone().unwrap_or_else(|| "local".into());
        let mut snapshot_created = false;
        let intent = match (&store, from_file) {
            (Some(store), Some(file_intent)) => {
                match store
                    .put_snapshot(&run_key, file_intent.canonical_json().as_bytes())
                    .await?
                {
                    SnapshotOutcome::Created => {
                        info!(run_key, digest = %file_intent.digest(), "intent snapshot created for the run");
                        snapshot_created = true;
                        file_intent
                    }
                    SnapshotOutcome::AlreadyPresent { bytes } => {
                        let snap = Intent::from_snapshot_json(&snapshot_name(&run_key), &bytes)?;
                        if snap.digest() != file_intent.digest() {
                            warn!(run_key, snapshot = %snap.digest(), file = %file_intent.digest(),
                                "the intent file changed since this run started; using the run's snapshot");
                        }
                        snap
                    }
                }
            }
            (Some(store), None) => match store.get_snapshot(&run_key).await? {
                Some(bytes) => Intent::from_snapshot_json(&snapshot_name(&run_key), &bytes)?,
                None => {
                    return Err(Error::Usage(format!(
                        "run {run_key} has no intent snapshot in the state store; run the snapshot step first or pass --intent"
                    )));
                }
            },
            (None, Some(file_intent)) => file_intent,
            (None, None) => unreachable!("checked above"),
        };
        let intent_digest = intent.digest();
        let arm = build_arm_client(&args)?;
        info!(step, run_key, mode = %args.mode, digest = %intent_digest, "step starting");
        Ok(StepContext {
            step,
            args,
            run_key,
            intent,
            intent_digest,
            store,
            arm,
            started_at,
            snapshot_created,
        })
    }

    /// `--snapshot-only`: the snapshot was written (or already there) by [`StepContext::init`];
    /// report it as the step's outputs and stop.
    pub fn finish_snapshot_only(self) -> Result<Outcome> {
        if self.store.is_none() {
            return Err(Error::Usage(
                "--snapshot-only needs --state and --run-key".into(),
            ));
        }
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "changes".into(),
            u8::from(self.snapshot_created).to_string(),
        );
        outputs.insert("record".into(), snapshot_name(&self.run_key));
        outputs.insert("intent-digest".into(), self.intent_digest.clone());
        if let Some(dir) = &self.args.outputs_dir {
            crate::step::write_outputs(dir, &outputs)?;
        }
        info!(run_key = %self.run_key, created = self.snapshot_created, digest = %self.intent_digest, "intent snapshot ready");
        Ok(Outcome::converged())
    }

    /// Whether this run may write to Azure.
    pub fn apply(&self) -> bool {
        self.args.mode == Mode::Apply
    }

    /// Takes the network's lease (apply mode with a state store) so that two pipelines never
    /// mutate one network at once. `None` when there is nothing to serialize.
    pub async fn lock(&self) -> Result<Option<LockGuard>> {
        self.lock_named(&lock_name(&self.intent.network_manager_id()))
            .await
    }

    /// Takes the lease of the network's private DNS (dns-link): DNS work of two runs never
    /// interleaves, but it runs beside the AVNM steps of its own run instead of queueing behind
    /// them (it touches none of their resources).
    pub async fn lock_dns(&self) -> Result<Option<LockGuard>> {
        self.lock_named(&dns_lock_name(&self.intent.network_manager_id()))
            .await
    }

    async fn lock_named(&self, name: &str) -> Result<Option<LockGuard>> {
        let (Some(store), true) = (&self.store, self.apply()) else {
            return Ok(None);
        };
        let wait = env_secs(LOCK_WAIT_ENV, LOCK_WAIT, 0, 86_400)?;
        let ttl = env_secs(LOCK_TTL_ENV, LOCK_TTL, 1, 3_600)?;
        // " run <key> pid " is what the exit handler matches (`verify --outcome`); keep it.
        let holder = format!(
            "{} run {} pid {} host {}",
            self.step,
            self.run_key,
            std::process::id(),
            host_name()
        );
        let guard = store.acquire_lock(name, &holder, ttl, wait).await?;
        // From here on every ARM write first checks that the lease is still ours.
        self.arm.set_write_gate(Some(guard.write_gate()));
        Ok(Some(guard))
    }

    /// Writes the step record (last, after the Azure work) and the Argo outputs.
    pub async fn finish(
        self,
        plan: &Plan,
        mut outputs: BTreeMap<String, String>,
        status: ExitStatus,
        extra: serde_json::Value,
    ) -> Result<Outcome> {
        let (c, u, d) = plan.counts();
        outputs.insert("changes".into(), (c + u + d).to_string());
        let record = StepRecord {
            step: self.step.to_string(),
            run_key: self.run_key.clone(),
            intent_digest: self.intent_digest.clone(),
            mode: self.args.mode,
            started_at: rfc3339(self.started_at),
            ended_at: rfc3339(OffsetDateTime::now_utc()),
            status: match status {
                ExitStatus::Converged => Status::Converged,
                ExitStatus::Drift => Status::Drift,
                _ => Status::Failed,
            },
            changes: plan.changes.clone(),
            outputs: outputs.clone(),
            counters: serde_json::to_value(self.arm.counters()).unwrap_or_default(),
            extra,
        };
        if let Some(store) = &self.store {
            store.put_record(&record).await?;
            outputs.insert(
                "record".into(),
                format!("runs/{}/{}.json", self.run_key, self.step),
            );
        }
        if let Some(dir) = &self.args.outputs_dir {
            crate::step::write_outputs(dir, &outputs)?;
        }
        info!(step = self.step, changes = c + u + d, counters = %record.counters, "step finished");
        Ok(Outcome { status })
    }
}

/// The lease name of a network manager: its name plus a digest of its lower-cased id, so that
/// it is unique per manager, case-insensitive like ARM ids, and within the store's 128
/// characters of `[A-Za-z0-9._-]` (the whole id, with its subscription and resource group,
/// does not fit).
pub fn lock_name(network_manager_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(network_manager_id.to_ascii_lowercase().as_bytes());
    format!(
        "nm-{}-{}",
        crate::resources::name_of(network_manager_id),
        &hex::encode(digest)[..16]
    )
}

/// The lease name of a network's private DNS work (see [`StepContext::lock_dns`]).
pub fn dns_lock_name(network_manager_id: &str) -> String {
    format!("{}-dns", lock_name(network_manager_id))
}

/// Every lease a run of this network may hold (what an exit handler must clean up).
pub fn lock_names(network_manager_id: &str) -> [String; 2] {
    [
        lock_name(network_manager_id),
        dns_lock_name(network_manager_id),
    ]
}

/// A millisecond setting from the environment.
pub fn env_ms(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The step whose record carries the network group ids (`group-ids` output).
pub const GROUPS_STEP: &str = "tag-groups";

/// Network group ids a step takes from this run's `tag-groups` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamGroups {
    /// Group name -> id from the record; `None`: derive the ids from the intent (they are
    /// deterministic), which only a run without a state store or a plan may do.
    pub ids: Option<BTreeMap<String, String>>,
    /// Where the ids came from, for the log and the record.
    pub source: String,
}

/// Parses tag-groups' `group-ids` output: a JSON object `{name: id}`.
pub fn parse_group_ids(text: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("`group-ids` is not JSON ({e})"))?;
    let obj = v
        .as_object()
        .ok_or("`group-ids` must be a JSON object (name -> id)")?;
    obj.iter()
        .map(|(name, id)| match id.as_str() {
            Some(id) => Ok((name.clone(), id.to_string())),
            None => Err(format!("`group-ids`: the id of {name} is not a string")),
        })
        .collect()
}

impl StepContext {
    /// The network group ids of this run, from the `tag-groups` record ("the next step takes
    /// its inputs from the previous one"). With a state store the record must exist, be
    /// converged, in apply mode and of the same intent digest; otherwise apply fails (exit 1)
    /// and plan falls back to ids derived from the intent, saying so.
    pub async fn upstream_group_ids(&self) -> Result<UpstreamGroups> {
        let Some(store) = &self.store else {
            return Ok(UpstreamGroups {
                ids: None,
                source: "derived from the intent (no state store)".into(),
            });
        };
        let run = &self.run_key;
        let (step, up) = (self.step, GROUPS_STEP);
        let problem = |msg: String| -> Result<UpstreamGroups> {
            if self.apply() {
                Err(Error::Other(format!(
                    "run {run}: {msg}; {step} applies only after {up} converged in apply mode in the same run"
                )))
            } else {
                warn!(run_key = %run, upstream = up, "{msg}; planning with group ids derived from the intent");
                Ok(UpstreamGroups {
                    ids: None,
                    source: format!("derived from the intent ({msg})"),
                })
            }
        };
        let Some(rec) = store.get_record(run, up).await? else {
            return problem(format!(
                "no {up} record in the state store (runs/{run}/{up}.json)"
            ));
        };
        if rec.intent_digest != self.intent_digest {
            return Err(Error::Other(format!(
                "run {run}: the {up} record was made from intent {}, but the run's intent is {}; \
                 the state store is inconsistent for this run key",
                rec.intent_digest, self.intent_digest
            )));
        }
        if rec.status != Status::Converged || rec.mode != Mode::Apply {
            return problem(format!(
                "the {up} record is {:?} in {} mode",
                rec.status, rec.mode
            ));
        }
        let Some(text) = rec.outputs.get("group-ids") else {
            return Err(Error::Other(format!(
                "run {run}: the {up} record has no `group-ids` output"
            )));
        };
        let ids = parse_group_ids(text)
            .map_err(|e| Error::Other(format!("run {run}: the {up} record: {e}")))?;
        info!(run_key = %run, upstream = up, groups = ids.len(), "group ids taken from the upstream record");
        Ok(UpstreamGroups {
            ids: Some(ids),
            source: format!("runs/{run}/{up}.json"),
        })
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn snapshot_name(run_key: &str) -> String {
    format!("runs/{run_key}/intent.json")
}

/// A credential for https blob URLs without a SAS; SAS and http (Azurite) URLs need none.
fn state_credential(
    url: &str,
) -> Result<Option<Arc<dyn azure_core::credentials::TokenCredential>>> {
    if !url.starts_with("https://") || url.contains("sig=") {
        return Ok(None);
    }
    match Credential::from_env() {
        Ok(Credential::Azure(c)) => Ok(Some(c)),
        Ok(Credential::Static(_)) => Err(Error::Usage(
            "the state store needs an Entra ID credential or a SAS in its URL; NETSTEP_ARM_TOKEN only serves ARM".into(),
        )),
        Err(e) => Err(Error::Usage(format!("no Azure credential for the state store: {e}"))),
    }
}

fn build_arm_client(args: &CommonArgs) -> Result<ArmClient> {
    url::Url::parse(&args.arm_endpoint)
        .map_err(|e| Error::Usage(format!("--arm-endpoint {}: {e}", args.arm_endpoint)))?;
    let credential = Credential::from_env()?;
    // `netstep/<version> <binary>`: ARM's logs (and armsim's, for the benchmark) tell the
    // steps apart.
    let binary = std::env::args_os()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut b = ArmClient::builder()
        .endpoint(args.arm_endpoint.clone())
        .credential(credential)
        .user_agent(
            format!("netstep/{} {binary}", env!("CARGO_PKG_VERSION"))
                .trim_end()
                .to_string(),
        );
    if let Some(dir) = &args.record_traffic {
        b = b.record_traffic(dir.clone());
    }
    // Tuning for the simulator (documented in docs/operations.md); never needed against Azure.
    // NETSTEP_LRO_POLL_MS fixes every long-running-operation poll delay (the simulator's
    // operations take milliseconds, not the seconds its Retry-After headers say).
    if let Some(ms) = env_ms("NETSTEP_LRO_POLL_MS") {
        let d = Duration::from_millis(ms);
        b = b.lro(crate::arm::LroConfig {
            default_delay: d,
            min_delay: d,
            max_delay: d,
            ..crate::arm::LroConfig::default()
        });
    }
    // NETSTEP_RETRY_INITIAL_MS shortens the backoff cap of the first retry (4 s against Azure;
    // it doubles per retry) so fault-injection runs take seconds. A server-given Retry-After
    // is still honoured as it is.
    if let Some(ms) = env_ms("NETSTEP_RETRY_INITIAL_MS") {
        b = b.retry_policy(crate::arm::RetryPolicy {
            initial: Duration::from_millis(ms),
            ..crate::arm::RetryPolicy::default()
        });
    }
    Ok(b.build()?)
}

#[cfg(test)]
mod tests {
    use super::{lock_name, parse_group_ids, parse_secs};
    use std::time::Duration;

    #[test]
    fn lock_settings_are_whole_seconds_in_range() {
        let d = Duration::from_secs(600);
        assert_eq!(parse_secs("W", None, d, 0, 10).unwrap(), d);
        assert_eq!(parse_secs("W", Some(" ".into()), d, 0, 10).unwrap(), d);
        assert_eq!(
            parse_secs("W", Some(" 7 ".into()), d, 0, 10).unwrap(),
            Duration::from_secs(7)
        );
        for bad in ["-1", "1.5", "11", "ten"] {
            let e = parse_secs("NETSTEP_LOCK_WAIT_S", Some(bad.into()), d, 0, 10).unwrap_err();
            assert_eq!(e.exit_status(), crate::error::ExitStatus::InvalidInput);
            assert!(e.to_string().contains("NETSTEP_LOCK_WAIT_S"), "{e}");
        }
    }

    #[test]
    fn group_ids_output_is_a_name_to_id_object() {
        let m =
            parse_group_ids(r#"{"all-prod-spokes": "/x/networkGroups/all-prod-spokes"}"#).unwrap();
        assert_eq!(m["all-prod-spokes"], "/x/networkGroups/all-prod-spokes");
        assert!(parse_group_ids(r#"["/x/networkGroups/b"]"#).is_err());
        assert!(
            parse_group_ids(r#"{"a": 1}"#)
                .unwrap_err()
                .contains("of a is not a string")
        );
        assert!(parse_group_ids("{oops").is_err());
    }

    #[test]
    fn lock_names_fit_the_store_and_ignore_case() {
        let id = "/subscriptions/6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718/resourceGroups/rg-globojava-connectivity/providers/Microsoft.Network/networkManagers/avnm-globojava";
        let n = lock_name(id);
        assert!(n.starts_with("nm-avnm-globojava-"), "{n}");
        assert!(n.len() <= 128);
        assert!(
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        );
        assert_eq!(
            n,
            lock_name(
                &id.to_uppercase()
                    .replace("AVNM-GLOBOJAVA", "avnm-globojava")
            )
        );
        assert_ne!(n, lock_name(&id.replace("rg-globojava", "rg-other")));
    }
}
