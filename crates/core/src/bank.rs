//! The bank app (seed 002's test application): accounts with credit, debit and atomic
//! transfer. It is the correctness workload of the replicated core: total money always equals
//! credits minus debits, and no balance is ever negative.

use imbl::OrdMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_types::Account;

use crate::{CommandError, Ctx, Event};

/// The longest account id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Bank commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankCommand {
    Open {
        id: String,
    },
    Credit {
        id: String,
        amount: u64,
    },
    Debit {
        id: String,
        amount: u64,
    },
    Transfer {
        from: String,
        to: String,
        amount: u64,
    },
}

/// Bank replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankReply {
    Account(Account),
    Transfer {
        from: Account,
        to: Account,
        revision: u64,
    },
}

/// One account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    balance: u64,
    revision: u64,
}

/// The bank's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bank {
    accounts: OrdMap<String, Stored>,
    /// Sum of every accepted credit, for the conservation check.
    pub total_credited: u128,
    /// Sum of every accepted debit.
    pub total_debited: u128,
}

/// Check an account id: 1 to 128 characters from `A-Z a-z 0-9 . _ -`.
pub fn validate_id(field: &str, id: &str) -> Result<(), CommandError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CommandError::Invalid {
            field: field.into(),
            message: format!(
                "must be 1 to {MAX_ID_LEN} characters from A-Z, a-z, 0-9, '.', '_' and '-'; got {id:?}"
            ),
        })
    }
}

/// Largest amount a request may carry: 2^53 - 1, the largest integer every JSON client reads
/// exactly (RFC 7493, I-JSON: JavaScript's numbers and any parser into doubles lose the
/// units above it, so a larger amount could be shown or re-sent as another number).
pub const MAX_AMOUNT: u64 = (1 << 53) - 1;

/// Check an amount: a positive integer in minor units.
pub fn validate_amount(amount: u64) -> Result<(), CommandError> {
    if amount == 0 {
        return Err(CommandError::Invalid {
            field: "amount".into(),
            message: "must be a positive integer (minor units); got 0".into(),
        });
    }
    Ok(())
}

impl BankCommand {
    /// Check a new command before it is proposed: [`BankCommand::validate`], and amounts at
    /// most [`MAX_AMOUNT`]. (Apply checks only `validate`, so a log written before the
    /// maximum replays as it did.)
    pub fn check_new(&self) -> Result<(), CommandError> {
        self.validate()?;
        match self {
            BankCommand::Open { .. } => Ok(()),
            BankCommand::Credit { amount, .. }
            | BankCommand::Debit { amount, .. }
            | BankCommand::Transfer { amount, .. } => {
                if *amount > MAX_AMOUNT {
                    return Err(CommandError::Invalid {
                        field: "amount".into(),
                        message: format!(
                            "must be at most {MAX_AMOUNT} (2^53 - 1, the largest integer every \
                             JSON client reads exactly); got {amount}"
                        ),
                    });
                }
                Ok(())
            }
        }
    }

    /// Check the command's fields without looking at state.
    pub fn validate(&self) -> Result<(), CommandError> {
        match self {
            BankCommand::Open { id } => validate_id("id", id),
            BankCommand::Credit { id, amount } | BankCommand::Debit { id, amount } => {
                validate_id("id", id)?;
                validate_amount(*amount)
            }
            BankCommand::Transfer { from, to, amount } => {
                validate_id("from", from)?;
                validate_id("to", to)?;
                validate_amount(*amount)?;
                if from == to {
                    return Err(CommandError::Invalid {
                        field: "to".into(),
                        message: "must differ from \"from\"".into(),
                    });
                }
                Ok(())
            }
        }
    }
}

impl Bank {
    /// One account by id.
    pub fn get(&self, id: &str) -> Option<Account> {
        self.accounts.get(id).map(|s| view(id, s))
    }

    /// Every account, ordered by id.
    pub fn list(&self) -> Vec<Account> {
        self.accounts.iter().map(|(id, s)| view(id, s)).collect()
    }

    /// Sum of all balances.
    pub fn total_balance(&self) -> u128 {
        self.accounts.values().map(|s| s.balance as u128).sum()
    }

    /// Apply one bank command; on `Err` nothing changed.
    pub fn apply(
        &mut self,
        cmd: &BankCommand,
        ctx: Ctx,
        events: &mut Vec<Event>,
    ) -> Result<BankReply, CommandError> {
        cmd.validate()?;
        let rev = ctx.index;
        match cmd {
            BankCommand::Open { id } => {
                if self.accounts.contains_key(id) {
                    return Err(CommandError::Conflict {
                        message: format!("account {id:?} already exists"),
                    });
                }
                let stored = Stored {
                    balance: 0,
                    revision: rev,
                };
                let account = view(id, &stored);
                self.accounts.insert(id.clone(), stored);
                events.push(event("opened", &account, None));
                Ok(BankReply::Account(account))
            }
            BankCommand::Credit { id, amount } => {
                let acc = self.account_mut(id)?;
                let Some(balance) = acc.balance.checked_add(*amount) else {
                    return Err(CommandError::Invalid {
                        field: "amount".into(),
                        message: format!(
                            "would overflow the balance of {id:?} (at most {})",
                            u64::MAX
                        ),
                    });
                };
                acc.balance = balance;
                acc.revision = rev;
                let account = view(id, acc);
                self.total_credited += *amount as u128;
                events.push(event("credited", &account, Some(*amount)));
                Ok(BankReply::Account(account))
            }
            BankCommand::Debit { id, amount } => {
                let acc = self.account_mut(id)?;
                if acc.balance < *amount {
                    return Err(CommandError::InsufficientFunds {
                        account: id.clone(),
                        balance: acc.balance,
                        amount: *amount,
                    });
                }
                acc.balance -= *amount;
                acc.revision = rev;
                let account = view(id, acc);
                self.total_debited += *amount as u128;
                events.push(event("debited", &account, Some(*amount)));
                Ok(BankReply::Account(account))
            }
            BankCommand::Transfer { from, to, amount } => {
                let to_balance = self.account_mut(to)?.balance;
                let src = self.account_mut(from)?;
                if src.balance < *amount {
                    return Err(CommandError::InsufficientFunds {
                        account: from.clone(),
                        balance: src.balance,
                        amount: *amount,
                    });
                }
                if to_balance.checked_add(*amount).is_none() {
                    return Err(CommandError::Invalid {
                        field: "amount".into(),
                        message: format!("would overflow the balance of {to:?}"),
                    });
                }
                src.balance -= *amount;
                src.revision = rev;
                let from_view = view(from, src);
                let dst = self.account_mut(to)?;
                dst.balance += *amount;
                dst.revision = rev;
                let to_view = view(to, dst);
                events.push(transfer_event(
                    "transfer_out",
                    &from_view,
                    &to_view,
                    *amount,
                ));
                events.push(transfer_event("transfer_in", &to_view, &from_view, *amount));
                Ok(BankReply::Transfer {
                    from: from_view,
                    to: to_view,
                    revision: rev,
                })
            }
        }
    }

    fn account_mut(&mut self, id: &str) -> Result<&mut Stored, CommandError> {
        self.accounts
            .get_mut(id)
            .ok_or_else(|| CommandError::NotFound {
                message: format!("account {id:?} does not exist"),
            })
    }
}

fn view(id: &str, s: &Stored) -> Account {
    Account {
        id: id.to_string(),
        balance: s.balance,
        revision: s.revision,
    }
}

fn topic(id: &str) -> String {
    format!("bank/accounts/{id}")
}

fn event(kind: &str, account: &Account, amount: Option<u64>) -> Event {
    let mut body = json!({"kind": kind, "account": account});
    if let Some(amount) = amount {
        body["amount"] = json!(amount);
    }
    Event {
        topic: topic(&account.id),
        body,
    }
}

fn transfer_event(kind: &str, account: &Account, other: &Account, amount: u64) -> Event {
    Event {
        topic: topic(&account.id),
        body: json!({"kind": kind, "account": account, "amount": amount, "counterparty": other.id}),
    }
}
