//! `/v1/bank/...`: accounts, credit, debit, transfers.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::bank::{BankCommand, BankReply, validate_id};
use switchyard_core::{Command, Reply};
use switchyard_types::{
    Account, AccountList, Amount, ErrorBody, OpenAccount, Transfer, TransferRequest,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Body, Consistency, IdempotencyKey, Shared};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(open, list))
        .routes(routes!(get_one))
        .routes(routes!(credit))
        .routes(routes!(debit))
        .routes(routes!(transfer))
}

async fn run(s: &Shared, cmd: BankCommand, key: Option<String>) -> Result<BankReply, ApiError> {
    // Validate before proposing, so bad input never reaches the log.
    cmd.check_new()?;
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

/// Open an account with balance 0.
#[utoipa::path(post, path = "/v1/bank/accounts", tag = "bank", request_body = OpenAccount,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes a retry return the first answer")),
    responses((status = 201, body = Account), (status = 400, body = ErrorBody), (status = 409, description = "conflict: the account exists", body = ErrorBody)))]
async fn open(
    State(s): State<Shared>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<OpenAccount>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    let r = run(&s, BankCommand::Open { id: b.id }, key).await?;
    Ok((StatusCode::CREATED, account(r)?))
}

/// Add a positive amount (minor units) to an account.
#[utoipa::path(post, path = "/v1/bank/accounts/{id}/credit", tag = "bank", request_body = Amount,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = Account), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn credit(
    State(s): State<Shared>,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<Amount>,
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

/// Take a positive amount from an account; refused with 409 `insufficient_funds` when the
/// balance is lower.
#[utoipa::path(post, path = "/v1/bank/accounts/{id}/debit", tag = "bank", request_body = Amount,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = Account), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "insufficient_funds", body = ErrorBody)))]
async fn debit(
    State(s): State<Shared>,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<Amount>,
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

/// Move an amount between two accounts atomically (one revision, two events). `to` must differ
/// from `from` (400 naming `to` otherwise).
#[utoipa::path(post, path = "/v1/bank/transfers", tag = "bank", request_body = TransferRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = Transfer),
        (status = 400, description = "invalid: a bad field, or `to` equal to `from`", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "insufficient_funds", body = ErrorBody)))]
async fn transfer(
    State(s): State<Shared>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<TransferRequest>,
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

/// Every account (linearizable unless `?consistency=stale`).
#[utoipa::path(get, path = "/v1/bank/accounts", tag = "bank", params(("consistency" = Option<String>, Query, description = "linearizable (default) or stale")), responses((status = 200, body = AccountList)))]
async fn list(
    State(s): State<Shared>,
    consistency: Consistency,
) -> Result<Json<AccountList>, ApiError> {
    consistency.ready(&s.node).await?;
    let accounts = s.node.view.read(|st| st.bank.list());
    Ok(Json(AccountList { accounts }))
}

/// One account (linearizable unless `?consistency=stale`).
#[utoipa::path(get, path = "/v1/bank/accounts/{id}", tag = "bank", params(("id" = String, Path), ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = Account), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(s): State<Shared>,
    Path(id): Path<String>,
    consistency: Consistency,
) -> Result<Json<Account>, ApiError> {
    validate_id("id", &id)?;
    consistency.ready(&s.node).await?;
    s.node
        .view
        .read(|st| st.bank.get(&id))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("account {id:?} does not exist")))
}
