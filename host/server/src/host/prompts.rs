//! Answering host prompts and telling the app: consent, share-card, payment
//! and document sheets, answered only by their own user through the host's
//! UI; and the expiry of payment sheets nobody answered.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use superapp_core::Capability;
use superapp_runtime::bindings::superapp::plugin::types::{
    ConsentAnswer, DisclosedClaim, DocumentOutcome, Event, PaymentResult, Presentation,
};
use superapp_runtime::capabilities::payments::outcome;
use superapp_runtime::view::View;
use superapp_services::consent::{ConsentError, Decision, Prompt, PromptBody, PromptKind};
use superapp_services::documents::requests::DocRequest;
use superapp_services::documents::DocumentError;
use superapp_services::identity::{IdentityError, User};
use superapp_services::ledger::orders::{Order, OrderError, OrderState};

use super::{Host, HostError};

/// The user's answer to a prompt, as the host's own UI sends it. Which
/// field counts depends on the prompt's kind; the others are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// Approving a payment sheet: the user's password again (step-up).
    #[serde(default)]
    pub password: Option<String>,
    /// Approving a document sheet: the fields the user leaves ticked; all
    /// requested fields if absent.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Approving a share-card prompt: the chat to share into, one of the
    /// user's own.
    #[serde(default)]
    pub conversation_id: Option<String>,
}

/// What answering a prompt did: the prompt as it now stands, the order or
/// document request it settled, and the view the app drew on hearing it.
#[derive(Debug, Serialize)]
pub struct Answered {
    pub prompt: Prompt,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<DocRequest>,
    pub view: Option<View>,
}

/// How long answering a document sheet waits for the presentation to reach
/// a backend that receives documents, before the app is told.
const INLINE_DELIVERY: std::time::Duration =
    std::time::Duration::from_secs(superapp_services::callbacks::INLINE_SECS);

impl Host {
    /// Answer one of `user`'s prompts in their `session` (its token), tell
    /// its app, and return what happened. `client` is where the answer came
    /// from (the step-up of a payment is counted against the session).
    pub async fn answer_prompt(
        &self,
        user: &User,
        session: &str,
        client: IpAddr,
        prompt_id: &str,
        approve: bool,
        answer: Answer,
    ) -> Result<Answered, HostError> {
        let pending = self.consent.prompt(&user.id, prompt_id)?;
        // A sheet the app drew before the user refused it the capability
        // cannot be approved after: it is declined now if a crash kept the
        // revocation from declining it then.
        if approve
            && pending.kind() != PromptKind::Consent
            && self
                .consent
                .refused(&user.id, &pending.app, pending.capability)?
        {
            self.withdraw_pending(user, &pending.app, pending.capability)
                .await?;
            return Err(ConsentError::Answered.into());
        }
        match pending.kind() {
            PromptKind::Payment => {
                self.answer_payment(user, session, client, prompt_id, approve, answer)
                    .await
            }
            PromptKind::Document => self.answer_document(user, prompt_id, approve, answer).await,
            PromptKind::Consent | PromptKind::ShareCard => {
                self.answer_consent(user, &pending, approve, answer).await
            }
        }
    }

    async fn answer_consent(
        &self,
        user: &User,
        pending: &Prompt,
        approve: bool,
        answer: Answer,
    ) -> Result<Answered, HostError> {
        // Approving a share names the chat, which must be one of the user's.
        let target = if pending.kind() == PromptKind::ShareCard && approve {
            let chat = answer.conversation_id.ok_or_else(|| {
                HostError::Invalid(
                    "approving a share needs a body {\"conversation_id\": \"…\"}".into(),
                )
            })?;
            self.messaging.get(user, &chat)?;
            Some(chat)
        } else {
            None
        };
        let prompt = self.consent.answer(&user.id, &pending.id, approve)?;
        if let (Some(chat), PromptBody::ShareCard(card)) = (target, &prompt.body) {
            self.messaging.share_card(user, &chat, card.clone()).await?;
        }
        self.flush().await?;
        // The app hears the answer as an event and draws what follows.
        let event = match prompt.kind() {
            PromptKind::ShareCard => Event::CardShared(approve),
            _ => Event::Consent(ConsentAnswer {
                capability: prompt.capability.name().to_string(),
                granted: approve,
            }),
        };
        // Told of a refusal, an app may not ask again at once.
        let view = self.deliver(&user.id, &prompt.app, event, approve).await;
        self.flush().await?;
        Ok(Answered {
            prompt,
            order: None,
            request: None,
            view,
        })
    }

    async fn answer_payment(
        &self,
        user: &User,
        session: &str,
        client: IpAddr,
        id: &str,
        approve: bool,
        answer: Answer,
    ) -> Result<Answered, HostError> {
        let order = if approve {
            let password = answer.password.ok_or_else(|| {
                HostError::Invalid("confirming a payment needs a body {\"password\": \"…\"}".into())
            })?;
            let pending = self
                .orders
                .get(id)?
                .filter(|o| o.user == user.id)
                .ok_or_else(|| HostError::NotFound("no such order".into()))?;
            // A sheet that ran out before it was confirmed says so, whether
            // or not the host has marked its order expired yet.
            if pending.state == OrderState::Expired {
                return Err(HostError::OrderExpired);
            }
            if pending.state != OrderState::Pending {
                return Err(OrderError::NotPending.into());
            }
            let confirmed = self
                .identity
                .confirm_password(user, session, &password, client)
                .await;
            if let Err(e) = confirmed {
                if matches!(e, IdentityError::BadCredentials) {
                    self.orders.record_failed_step_up(&pending)?;
                    self.flush().await?;
                }
                return Err(e.into());
            }
            self.orders.confirm(&user.id, id)
        } else {
            self.orders.decline(&user.id, id)
        };
        // A failed confirmation may still have left an audit record.
        self.flush().await?;
        let order = order?;
        let view = self.tell_app(&order).await;
        self.flush().await?;
        if order.state == OrderState::Expired {
            return Err(HostError::OrderExpired);
        }
        let prompt = self.consent.prompt(&user.id, id)?;
        Ok(Answered {
            prompt,
            order: Some(order),
            request: None,
            view,
        })
    }

    async fn answer_document(
        &self,
        user: &User,
        id: &str,
        approve: bool,
        answer: Answer,
    ) -> Result<Answered, HostError> {
        let mut to_backend = None;
        let (request, outcome) = if approve {
            let app = self
                .requests
                .get(id)?
                .filter(|r| r.user == user.id)
                .ok_or(DocumentError::NotFound)?
                .app;
            let pseudonym = self.services.pseudonyms.for_app(&user.id, &app);
            let (request, shared) =
                self.requests
                    .approve(&user.id, id, answer.fields, &pseudonym)?;
            // Delivered to the provider's backend instead: the app hears
            // that it was shared, and nothing of what.
            let to_app = shared.delivery.is_none();
            let presentation = Presentation {
                request_id: request.id.clone(),
                credential_type: request.credential_type.clone(),
                issuer_id: shared.issuer,
                claims: shared
                    .claims
                    .into_iter()
                    .filter(|_| to_app)
                    .map(|c| DisclosedClaim {
                        name: c.name,
                        value: c.value,
                        salt: c.salt,
                    })
                    .collect(),
                envelope: if to_app {
                    serde_json::to_string(&shared.envelope).expect("envelopes serialize")
                } else {
                    String::new()
                },
            };
            to_backend = shared.delivery.clone();
            (request, DocumentOutcome::Shared(presentation))
        } else {
            let request = self.requests.decline(&user.id, id)?;
            let declined = DocumentOutcome::Declined("the user declined".into());
            (request, declined)
        };
        self.flush().await?;
        if let Some(delivery) = to_backend {
            // Send it now, so that the backend has it when the app asks;
            // if it does not go out in time it is retried as usual.
            if let Err(e) = self.deliver_callback(&delivery, INLINE_DELIVERY).await {
                tracing::warn!(error = %e, "cannot send a shared document to the backend now; it will be retried");
            }
        }
        let shared = matches!(outcome, DocumentOutcome::Shared(_));
        let view = self
            .deliver(&user.id, &request.app, Event::Document(outcome), shared)
            .await;
        self.flush().await?;
        let prompt = self.consent.prompt(&user.id, id)?;
        Ok(Answered {
            prompt,
            order: None,
            request: Some(request),
            view,
        })
    }

    /// Tell an order's app how it ended, and return the view it draws.
    pub(super) async fn tell_app(&self, order: &Order) -> Option<View> {
        let outcome = outcome(&order.state)?;
        let event = Event::Payment(PaymentResult {
            order_id: order.id.clone(),
            outcome,
        });
        // Only a payment made lets the app ask for something new in its
        // answer: told of a decline, an expiry or a failure, it may not ask
        // again by itself.
        let paid = order.state == OrderState::Paid;
        self.deliver(&order.user, &order.app, event, paid).await
    }

    /// The user changes a decision: a grant becomes a denial (effective on
    /// the next call), and deleting a denial forgets it (the next call asks
    /// again); with `forget`, a grant is forgotten at once, so the next call
    /// asks again. `NotFound` if there was no decision.
    pub async fn revoke_grant(
        &self,
        user: &User,
        app: &str,
        capability: Capability,
        forget: bool,
    ) -> Result<Decision, HostError> {
        let was = self
            .consent
            .revoke(&user.id, app, capability, forget)?
            .ok_or_else(|| HostError::NotFound("no such grant".into()))?;
        self.flush().await?;
        if was == Decision::Granted {
            self.withdraw_pending(user, app, capability).await?;
        }
        Ok(was)
    }

    /// Decline the sheets `app` put before `user` under `capability` that
    /// are still unanswered, and tell the app: a refusal recorded now stops
    /// new ones, and covers those already drawn too. (One answered in the
    /// meantime stays as answered.)
    async fn withdraw_pending(
        &self,
        user: &User,
        app: &str,
        capability: Capability,
    ) -> Result<(), HostError> {
        for prompt in self.consent.pending(&user.id)? {
            if prompt.app != app || prompt.capability != capability {
                continue;
            }
            let event = match prompt.kind() {
                PromptKind::Document => match self.requests.decline(&user.id, &prompt.id) {
                    Ok(_) => Event::Document(DocumentOutcome::Declined(
                        "the user withdrew the permission".into(),
                    )),
                    Err(DocumentError::Store(e)) => return Err(e.into()),
                    Err(_) => continue,
                },
                PromptKind::Payment => match self.orders.decline(&user.id, &prompt.id) {
                    Ok(order) => {
                        self.flush().await?;
                        self.tell_app(&order).await;
                        continue;
                    }
                    Err(OrderError::Store(e)) => return Err(e.into()),
                    Err(_) => continue,
                },
                PromptKind::ShareCard => match self.consent.answer(&user.id, &prompt.id, false) {
                    Ok(_) => Event::CardShared(false),
                    Err(ConsentError::Store(e)) => return Err(e.into()),
                    Err(_) => continue,
                },
                PromptKind::Consent => continue,
            };
            self.flush().await?;
            self.deliver(&user.id, app, event, false).await;
        }
        self.flush().await
    }
}
