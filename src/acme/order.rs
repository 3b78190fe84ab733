//! One certificate from the ACME server (RFC 8555 7.4), through `instant-acme`: the account
//! (stored, else created), the order for one name, its challenge answered while the server
//! validates, the key and CSR (rcgen, by `instant-acme`), the chain.

use super::storage::Storage;
use crate::config::acme::{AcmeConfig, Challenge};
use crate::tls::acme::{challenge_certificate, Issued};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use std::time::Duration;

/// How long the server may take to validate, and then to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(100))
    .backoff(1.5)
    .timeout(Duration::from_secs(60));

/// An error with the errors under it (`a: b: c`), so that a failed connect says why (a TLS
/// alert, a refused connection) and not only that it failed.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

/// The account for `cfg.directory`: the stored one, else a new one (stored).
async fn account(cfg: &AcmeConfig, storage: &Storage) -> Result<Account, String> {
    let builder = || match &cfg.directory_ca {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    let text = |e: instant_acme::Error| format!("{}: {}", cfg.directory, with_causes(&e));
    if let Some(creds) = storage.account(&cfg.directory) {
        return builder()
            .map_err(text)?
            .from_credentials(creds)
            .await
            .map_err(text);
    }
    let contact = cfg.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(|c| c.as_str()).collect();
    let new = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let eab = cfg
        .eab
        .as_ref()
        .map(|e| instant_acme::ExternalAccountKey::new(e.kid.clone(), &e.hmac_key));
    let (account, creds) = builder()
        .map_err(text)?
        .create(&new, cfg.directory.clone(), eab.as_ref())
        .await
        .map_err(text)?;
    storage.save_account(&cfg.directory, &creds)?;
    Ok(account)
}

/// The challenge answers put up for one order, taken down when it ends however it ends.
struct Answers<'a> {
    issued: &'a Issued,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.issued.set_http_answer(t, None);
        }
        for n in &self.names {
            self.issued.set_challenge(n, None);
        }
    }
}

/// Orders a certificate for `name`: `(chain, key)` as PEM. The error is the ACME problem
/// document's detail where the server sent one.
pub async fn obtain(
    cfg: &AcmeConfig,
    storage: &Storage,
    issued: &Issued,
    name: &str,
) -> Result<(String, String), String> {
    let account = account(cfg, storage).await?;
    let ids = [Identifier::Dns(name.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(|e| format!("new order: {}", with_causes(&e)))?;
    let mut answers = Answers {
        issued,
        tokens: Vec::new(),
        names: Vec::new(),
    };
    let kind = match cfg.challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(a) = authorizations.next().await {
        let mut a = a.map_err(|e| format!("authorization: {}", with_causes(&e)))?;
        match a.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization is {other:?}")),
        }
        let mut ch = a
            .challenge(kind.clone())
            .ok_or_else(|| format!("the server offers no {} challenge", cfg.challenge.as_str()))?;
        let key_auth = ch.key_authorization();
        match cfg.challenge {
            Challenge::Http01 => {
                issued.set_http_answer(&ch.token, Some(key_auth.as_str().to_string()));
                answers.tokens.push(ch.token.clone());
            }
            Challenge::TlsAlpn01 => {
                let cert = challenge_certificate(name, key_auth.digest().as_ref())?;
                issued.set_challenge(name, Some(cert));
                answers.names.push(name.to_string());
            }
        }
        ch.set_ready()
            .await
            .map_err(|e| format!("challenge: {}", with_causes(&e)))?;
    }
    let status = order
        .poll_ready(&POLL)
        .await
        .map_err(|e| format!("waiting for validation: {}", with_causes(&e)))?;
    if status != OrderStatus::Ready {
        return Err(why_invalid(&mut order, status).await);
    }
    let key = order
        .finalize()
        .await
        .map_err(|e| format!("finalize: {}", with_causes(&e)))?;
    let chain = order
        .poll_certificate(&POLL)
        .await
        .map_err(|e| format!("certificate: {}", with_causes(&e)))?;
    drop(answers);
    Ok((chain, key))
}

/// The problem an order that did not become ready ran into: its own, else its challenges'.
async fn why_invalid(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    if let Some(p) = &order.state().error {
        return format!("order {status:?}: {p}");
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut a)) = authorizations.next().await {
        let Ok(state) = a.refresh().await else {
            continue;
        };
        if let Some(p) = state.challenges.iter().find_map(|c| c.error.as_ref()) {
            return format!("order {status:?}: {p}");
        }
    }
    format!("order {status:?}")
}
