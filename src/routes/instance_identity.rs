//! Instance-identity sign-in (Coder: `postWorkspaceAuthAWSInstanceIdentity`,
//! `...AzureInstanceIdentity`, `...GoogleInstanceIdentity`; bodies
//! `agentsdk.{AWS,Azure,Google}InstanceIdentityToken`, answer
//! `agentsdk.sdk::AuthenticateResponse`).
//!
//! No credential: the body is the proof. Each request is rate limited per
//! client address, verified, and mapped to one agent
//! with `agent_select`; success mints a fresh agent token.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Buf;
use futures_util::Stream;
use serde::Deserialize;
use time::OffsetDateTime;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::filters::{null_as_default, read_json, refuse_unread, with_app};
use crate::app::App;
use crate::app::metrics::SignInOutcome;
use crate::identity::{self, Cloud, IdentityError};
use crate::routes::error::{ApiError, json_response, respond};
use crate::{auth, sdk, sign_in, store};

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let route = |name: &'static str, cloud: Cloud| {
        warp::path("api")
            .and(warp::path("v2"))
            .and(warp::path("workspaceagents"))
            .and(warp::path(name))
            .and(warp::path::end())
            .and(warp::post())
            .and(super::serve::remote_addr())
            .and(warp::body::stream())
            .and(with_app(app))
            .then(move |addr: Option<SocketAddr>, body, app: App| async move {
                let answer = sign_in(app.clone(), cloud, addr, body).await;
                let status = answer.as_ref().map_or_else(|e| e.status, |r| r.status());
                app.metrics.sign_in(cloud.as_str(), outcome(status));
                respond(answer)
            })
            .boxed()
    };
    route("aws-instance-identity", Cloud::Aws)
        .or(route("azure-instance-identity", Cloud::Azure))
        .unify()
        .or(route("google-instance-identity", Cloud::Google))
        .unify()
        .boxed()
}

/// A sign-in's outcome for the metrics, by its answer: 200 success, 401 an
/// invalid proof, 404/409 no (single) matching agent, 429 rate limited, other
/// 4xx a bad request (malformed bodies and proofs, an agent not in the latest
/// build), anything else an error.
fn outcome(status: StatusCode) -> SignInOutcome {
    match status.as_u16() {
        200..=299 => SignInOutcome::Success,
        401 => SignInOutcome::InvalidProof,
        404 | 409 => SignInOutcome::NoMatchingAgent,
        429 => SignInOutcome::RateLimited,
        400..=499 => SignInOutcome::BadRequest,
        _ => SignInOutcome::Error,
    }
}

/// The three request bodies in one: each cloud reads its own fields. Unknown
/// fields are ignored, as Coder's decoder does.
#[derive(Debug, Default, Deserialize)]
struct Proof {
    #[serde(default, deserialize_with = "null_as_default")]
    document: String,
    #[serde(default, deserialize_with = "null_as_default")]
    signature: String,
    #[serde(default, deserialize_with = "null_as_default")]
    encoding: String,
    #[serde(default, deserialize_with = "null_as_default")]
    json_web_token: String,
    #[serde(default)]
    agent_name: Option<String>,
}

/// Go's `validate:"required"` on the named string fields.
fn require(fields: &[(&str, &str)]) -> Result<(), ApiError> {
    let missing: Vec<&str> = fields
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| *k)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut err = ApiError::bad_request("Validation failed.");
    for field in missing {
        err = err.validation(
            field,
            "Validation failed for tag \"required\" with value: \"\"",
        );
    }
    Err(err)
}

async fn sign_in(
    app: App,
    cloud: Cloud,
    addr: Option<SocketAddr>,
    body: impl Stream<Item = Result<impl Buf, warp::Error>>,
) -> Result<Response, ApiError> {
    if let Some(addr) = addr
        && let Err(retry) = app.identity_limiter.check(addr.ip(), Instant::now())
    {
        return Err(refuse_unread(
            ApiError::too_many_requests(format!(
                "You've been rate limited for sending more than {} requests in 1m0s.",
                app.identity_limiter.limit()
            ))
            .detail(format!("Try again in {} seconds.", retry.as_secs().max(1))),
        ));
    }
    let mut proof: Proof = read_json(body).await?;
    match cloud {
        Cloud::Aws => require(&[
            ("signature", &proof.signature),
            ("document", &proof.document),
        ])?,
        Cloud::Azure => require(&[
            ("signature", &proof.signature),
            ("encoding", &proof.encoding),
        ])?,
        Cloud::Google => require(&[("json_web_token", &proof.json_web_token)])?,
    }
    let now = OffsetDateTime::now_utc();
    let trust = app.trust();
    // AWS and GCP are one RSA verification each (tens of microseconds): cheaper
    // inline than a trip to the blocking pool. Azure validates a certificate
    // chain (a millisecond or two): off the executor.
    let verified = match cloud {
        Cloud::Aws => identity::verify_aws(&proof.document, &proof.signature, &trust.aws),
        Cloud::Google => identity::verify_gcp(
            &proof.json_web_token,
            &trust.gcp,
            app.config.identity.gcp.audience.as_deref(),
            now,
        ),
        Cloud::Azure => {
            let span = tracing::Span::current();
            let signature = std::mem::take(&mut proof.signature);
            tokio::task::spawn_blocking(move || {
                span.in_scope(|| identity::verify_azure(&signature, &trust.azure, now))
            })
            .await
            .map_err(|e| ApiError::internal("An internal server error occurred.", &e))?
        }
    };
    let instance_id = verified.map_err(|e| refused_proof(cloud, &e))?;
    let minted = auth::new_agent_token();
    let chosen = app
        .sign_ins
        .submit(sign_in::Job {
            instance_id: instance_id.clone(),
            agent_name: proof.agent_name.take(),
            token_hash: minted.hash,
        })
        .await
        .map_err(|e| match e {
            store::StoreError::NotFound => {
                ApiError::internal("Internal error fetching workspace agent.", &e)
            }
            other => ApiError::from(other),
        })?;
    match chosen {
        Ok(c) => {
            tracing::info!(cloud = cloud.as_str(), instance_id, agent_id = %c.agent_id, agent = c.name, "instance-identity sign-in");
            Ok(json_response(
                StatusCode::OK,
                &sdk::AuthenticateResponse {
                    session_token: minted.token,
                },
            ))
        }
        Err(refusal) => {
            tracing::info!(
                cloud = cloud.as_str(),
                instance_id,
                ?refusal,
                "instance-identity sign-in refused"
            );
            Err(refusal.into())
        }
    }
}

/// Coder's answers for a proof that did not verify.
fn refused_proof(cloud: Cloud, e: &IdentityError) -> ApiError {
    tracing::info!(cloud = cloud.as_str(), error = %e, "instance-identity proof rejected");
    match cloud {
        Cloud::Aws => ApiError::unauthorized("Invalid AWS identity.").detail(e.to_string()),
        // As upstream: a generic detail; the reason (e.g. the issuer of a missing
        // intermediate) is in the server log above.
        Cloud::Azure => ApiError::unauthorized("Invalid Azure identity.")
            .detail("Signature verification failed."),
        Cloud::Google if e.is_malformed_claims() => {
            ApiError::bad_request("Error decoding JWT claims.").detail(e.to_string())
        }
        Cloud::Google => ApiError::unauthorized("Invalid GCP identity.").detail(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_answer() {
        use SignInOutcome::*;
        for (status, want) in [
            (200, Success),
            (401, InvalidProof),
            (404, NoMatchingAgent),
            (409, NoMatchingAgent),
            (429, RateLimited),
            (400, BadRequest),
            (413, BadRequest),
            (500, Error),
            (503, Error),
        ] {
            let status = StatusCode::from_u16(status).expect("status");
            assert_eq!(outcome(status), want, "{status}");
        }
    }
}
