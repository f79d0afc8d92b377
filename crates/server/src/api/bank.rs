//! `/v1/bank/...`: accounts, credit, debit, transfers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use switchyard_core::bank::{BankCommand, BankReply, validate_id};
use switchyard_core::{Command, Reply};
use switchyard_types::{Account, AccountList, Transfer};

use super::{Body, IdempotencyKey, Shared};
use crate::error::ApiError;

pub fn routes() -> axum::Router<Shared> {
    Router::new()
        .route("/v1/bank/accounts", post(open).get(list))
        .route("/v1/bank/accounts/{id}", get(get_one))
        .route("/v1/bank/accounts/{id}/credit", post(credit))
        .route("/v1/bank/accounts/{id}/debit", post(debit))
        .route("/v1/bank/transfers", post(transfer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmountBody {
    amount: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    from: String,
    to: String,
    amount: u64,
}

async fn run(s: &Shared, cmd: BankCommand, key: Option<String>) -> Result<BankReply, ApiError> {
    // Validate before proposing, so bad input never reaches the log.
    cmd.validate()?;
    match s.node.write(Command::Bank(cmd), key).await? {
        (Reply::Bank(r), _) => Ok(r),
        (other, _) => Err(ApiError::internal(format!(
            "bank command answered {other:?}"
        ))),
    }
}

fn account(r: BankReply) -> Result<Json<Account>, ApiError> {
    match r {
        BankReply::Account(a) => Ok(Json(a)),
        other => Err(ApiError::internal(format!(
            "expected an account, got {other:?}"
        ))),
    }
}

async fn open(
    State(s): State<Shared>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<OpenBody>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    let r = run(&s, BankCommand::Open { id: b.id }, key).await?;
    Ok((StatusCode::CREATED, account(r)?))
}

async fn credit(
    State(s): State<Shared>,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<AmountBody>,
) -> Result<Json<Account>, ApiError> {
    account(
        run(
            &s,
            BankCommand::Credit {
                id,
                amount: b.amount,
            },
            key,
        )
        .await?,
    )
}

async fn debit(
    State(s): State<Shared>,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<AmountBody>,
) -> Result<Json<Account>, ApiError> {
    account(
        run(
            &s,
            BankCommand::Debit {
                id,
                amount: b.amount,
            },
            key,
        )
        .await?,
    )
}

async fn transfer(
    State(s): State<Shared>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<TransferBody>,
) -> Result<Json<Transfer>, ApiError> {
    let cmd = BankCommand::Transfer {
        from: b.from,
        to: b.to,
        amount: b.amount,
    };
    match run(&s, cmd, key).await? {
        BankReply::Transfer { from, to, revision } => Ok(Json(Transfer { from, to, revision })),
        other => Err(ApiError::internal(format!(
            "expected a transfer, got {other:?}"
        ))),
    }
}

async fn list(State(s): State<Shared>) -> Result<Json<AccountList>, ApiError> {
    s.node.linearizable().await?;
    let accounts = s.node.view.read(|st| st.bank.list());
    Ok(Json(AccountList { accounts }))
}

async fn get_one(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Account>, ApiError> {
    validate_id("id", &id)?;
    s.node.linearizable().await?;
    s.node
        .view
        .read(|st| st.bank.get(&id))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("account {id:?} does not exist")))
}
