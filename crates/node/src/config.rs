//! What a node is configured with, and the one openraft configuration built from it.

use std::time::Duration;

use crate::bugs::Bug;

/// The settings of one node that the node itself uses (the server's configuration holds these
/// and more).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: u64,
    /// How often the leader sends heartbeats.
    pub heartbeat_interval: Duration,
    /// How long a follower waits without hearing from a leader before it stands for election
    /// (between 1 and 1.5 times this).
    pub election_timeout: Duration,
    /// Build a snapshot after this many log entries.
    pub snapshot_logs: u64,
    /// Log entries kept after a snapshot, for followers that lag a little.
    pub snapshot_keep_logs: u64,
    /// A write not committed within this time answers "outcome unknown".
    pub write_timeout: Duration,
    /// A follower hands writes to the leader (else it refuses them, naming the leader).
    pub forward_writes: bool,
    /// The leader serves a linearizable read from its lease (a quorum acknowledged it within
    /// the election timeout's lower part) without a heartbeat round; off: a round every time.
    pub lease_reads: bool,
    /// How long an idempotency key is remembered.
    pub idempotency_window: Duration,
    /// How often the leader probes agents that joined with a URL.
    pub agent_check_interval: Duration,
    /// Failed probes in a row before an agent is marked lost.
    pub agent_check_failures: u32,
    /// An empty node waits to be added to a cluster (else it starts a one-member cluster).
    pub join: bool,
    /// Bugs switched on (simulation only).
    #[cfg(feature = "bugs")]
    pub bugs: crate::bugs::Bugs,
}

/// The defaults of `switchyard serve` (the server's configuration takes them from here).
impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            heartbeat_interval: Duration::from_millis(150),
            election_timeout: Duration::from_millis(1000),
            snapshot_logs: 10_000,
            snapshot_keep_logs: 1000,
            write_timeout: Duration::from_secs(10),
            forward_writes: true,
            lease_reads: true,
            idempotency_window: Duration::from_millis(
                switchyard_core::idempotency::DEFAULT_WINDOW_MS as u64,
            ),
            agent_check_interval: Duration::from_secs(5),
            agent_check_failures: 3,
            join: false,
            #[cfg(feature = "bugs")]
            bugs: Default::default(),
        }
    }
}

impl NodeConfig {
    /// Whether `bug` is switched on (always `false` without the `bugs` feature).
    #[inline]
    pub fn bug(&self, bug: Bug) -> bool {
        #[cfg(feature = "bugs")]
        {
            self.bugs.contains(&bug)
        }
        #[cfg(not(feature = "bugs"))]
        {
            let _ = bug;
            false
        }
    }

    /// The openraft configuration of this node.
    pub fn raft_config(&self) -> Result<openraft::Config, String> {
        let config = openraft::Config {
            cluster_name: "switchyard".into(),
            // openraft starts an election when a follower's leader lease (election_timeout_max)
            // plus a random election_timeout_min..max has passed since it last heard from the
            // leader. 0.25 T .. 0.75 T makes that T .. 1.5 T for the configured T, the time a
            // follower waits in etcd's terms.
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_min: self.election_timeout.as_millis() as u64 / 4,
            election_timeout_max: self.election_timeout.as_millis() as u64 * 3 / 4,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.snapshot_keep_logs,
            // A restarted leader must win an election again: the state machine lives in memory
            // and the committed pointer on disk may lag, so a leader restored at once could
            // serve a stale "linearizable" read (found by the simulation; see
            // crates/sim/tests/fuzz.rs).
            enable_leader_restore: Some(self.bug(Bug::LeaderRestore)),
            ..Default::default()
        };
        config.validate().map_err(|e| e.to_string())
    }
}
