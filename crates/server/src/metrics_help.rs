//! What every metric the node exports means: the `# HELP` lines of `/metrics`, described
//! once when the Prometheus recorder is installed.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Describe every metric of the node (server, node and store crates).
pub(crate) fn describe() {
    describe_counter!(
        "switchyard_http_requests_total",
        "HTTP requests answered, by matched route, method and status"
    );
    describe_histogram!(
        "switchyard_http_request_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request (to the response head), by route, method and status"
    );
    describe_histogram!(
        "switchyard_write_seconds",
        Unit::Seconds,
        "Time from proposing a command to its commit (or the write timeout)"
    );
    describe_histogram!(
        "switchyard_log_commit_seconds",
        Unit::Seconds,
        "Time of one fsynced Raft log transaction (a group commit)"
    );
    describe_histogram!(
        "switchyard_log_commit_batch_size",
        Unit::Count,
        "Log operations committed together in one fsynced transaction"
    );
    describe_histogram!(
        "switchyard_snapshot_build_seconds",
        Unit::Seconds,
        "Time to build one snapshot: serialise the state and history and save them (fsynced)"
    );
    describe_counter!(
        "switchyard_timers_fired_total",
        "Timers fired by ticks this node proposed as leader"
    );
    describe_counter!(
        "switchyard_linearizable_reads_total",
        "Linearizable reads on this node, by how they were made current: sole_voter (no round), \
         lease (the leader's lease, no round), read_index (a heartbeat round), leader (a \
         follower with the leader's read index)"
    );
    describe_gauge!(
        "switchyard_watch_sessions",
        "Watch sessions (WebSocket and SSE) open on this node"
    );
    describe_counter!(
        "switchyard_peer_stream_appends_total",
        "Appends this node received from a leader on a peer stream (pipelined replication)"
    );
    describe_counter!(
        "switchyard_watch_closed_total",
        "Watch sessions the server ended with an error, by error code"
    );
    describe_gauge!("switchyard_raft_term", "This node's current Raft term");
    describe_gauge!(
        "switchyard_raft_applied_index",
        "Index of the last Raft log entry applied on this node"
    );
    describe_gauge!(
        "switchyard_raft_is_leader",
        "1 while this node is the leader, 0 otherwise"
    );
    describe_gauge!(
        "switchyard_revision",
        "Current revision: every event up to it has been applied on this node"
    );
    describe_gauge!(
        "switchyard_compact_revision",
        "Oldest revision a watch can resume from on this node"
    );
}
