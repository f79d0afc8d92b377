//! What the cluster tests share: the bank commands they write and how they read a balance.

use std::time::Duration;

use switchyard_core::Command;
use switchyard_core::bank::BankCommand;
use switchyard_testing::SimCluster;

pub const TEN_S: Duration = Duration::from_secs(10);

pub fn open(id: &str) -> Command {
    Command::Bank(BankCommand::Open { id: id.into() })
}

pub fn credit(id: &str, amount: u64) -> Command {
    Command::Bank(BankCommand::Credit {
        id: id.into(),
        amount,
    })
}

/// Account `id`'s balance in node `node`'s applied state.
pub fn balance(sim: &SimCluster, node: u64, id: &str) -> Option<u64> {
    sim.view(node).read(|s| s.bank.get(id).map(|a| a.balance))
}
