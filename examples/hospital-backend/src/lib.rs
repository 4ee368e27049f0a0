//! City Hospital's own booking system, as a provider runs it beside its
//! mini-program: the published schedule, slots held while a patient pays,
//! bookings made final by the super-app host's signed payment callbacks,
//! cancellations, and the check of a patient's insurance presentation.
//!
//! It trusts nothing the mini-program says about who the patient is: every
//! request must carry the host's `superapp-assertion` for this backend's
//! origin (`superapp_sdk::assertion`), whose `sub` is the patient's
//! pseudonymous id. Money is believed only from callbacks signed by the
//! host (`superapp_sdk::callbacks`), each applied once by delivery id, and
//! an insurance policy only from a presentation that verifies against the
//! insurer's and the host's keys (`superapp_sdk::credentials`), bound to
//! the asserted patient, accepted once and not on its insurer's status list
//! (read from the host, [`Hospital::read_revocations`]).
//!
//! The books are kept in one JSON file (`Config::books`), written whole
//! and synced after every change before the answer, so a restart or a
//! crash keeps every hold, booking and applied callback: a real hospital
//! keeps them in its database.

mod books;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use superapp_sdk::{assertion, callbacks, clock, credentials};

pub use books::{
    Booking, Catalog, Insurance, Refusal, State as BookingState, CLAIM_SECS, HOLD_SECS,
};
use books::{Books, HoldRequest};

/// What the backend is told at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The host's Ed25519 public key (`GET /api/v1/host-key`).
    pub host_key: [u8; 32],
    /// This backend's origin as the app's manifest lists it, e.g.
    /// `https://booking.cityhospital.example`: the assertions' audience.
    pub origin: String,
    /// The mini-program's id: the audience of the insurance presentations
    /// its patients share.
    pub app: String,
    /// Insurers whose policies the hospital accepts: issuer id and public
    /// key (as the host's `GET /api/v1/issuers` lists them).
    pub insurers: Vec<(String, [u8; 32])>,
    /// The file the books are kept in (read at start, written after every
    /// change); `None` keeps them in memory only, as tests do.
    pub books: Option<std::path::PathBuf>,
}

/// An insurer's status list as the host signed it.
#[derive(Debug, Clone)]
struct Listed {
    /// When the host listed it, by its signature (the clock's seconds).
    at: u64,
    revoked: Vec<String>,
}

pub struct Hospital {
    config: Config,
    catalog: Catalog,
    books: Mutex<Books>,
    /// Each accepted insurer's revoked credential ids, the newest list the
    /// host signed of those read ([`Hospital::read_revocations`]).
    revoked: RwLock<HashMap<String, Listed>>,
    /// How old a list may be for a policy to count
    /// ([`Hospital::require_fresh_revocations`]); `None`: no bound.
    revocations_max_age: Mutex<Option<u64>>,
    /// The clock, in seconds since the Unix epoch (tests move it).
    now: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// A refused request: its status and a message, as a JSON error body.
#[derive(Debug)]
pub struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": {"message": self.1}}))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Refused {
    Refused(status, message.into())
}

/// A JSON request body, refused (a body not sent as JSON, not JSON, or
/// not of this route) with the same JSON error body as every refusal.
struct Body<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Refused;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Refused> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(value)| Body(value))
            .map_err(|r| error(r.status(), r.body_text()))
    }
}

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Refused {
        match r {
            Refusal::NotFound(m) => error(StatusCode::NOT_FOUND, m),
            Refusal::Invalid(m) => error(StatusCode::BAD_REQUEST, m),
            Refusal::Conflict(m) => error(StatusCode::CONFLICT, m),
        }
    }
}

type Answer = Result<Response, Refused>;

/// How old an insurance presentation may be when it arrives.
const PRESENTATION_MAX_AGE_SECS: u64 = 600;

impl Hospital {
    /// The hospital with the books of `config.books` (none yet: empty).
    pub fn open(
        config: Config,
        now: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> anyhow::Result<Hospital> {
        let books = match &config.books {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .with_context(|| format!("cannot read the books in {}", path.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Books::default(),
                Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
            },
            None => Books::default(),
        };
        Ok(Hospital {
            config,
            catalog: Catalog::published().context("the published schedule does not read")?,
            books: Mutex::new(books),
            revoked: RwLock::default(),
            revocations_max_age: Mutex::default(),
            now,
        })
    }

    /// Read each accepted insurer's status list, the ids of the
    /// credentials it revoked, from the host at `host` (its base URL, e.g.
    /// `https://superapp.example`; `GET /api/v1/issuers/{id}/revoked`), and
    /// check policies against it from now on. Only the list the host
    /// signed counts, and it is as fresh as the time the host signed into
    /// it, not as the time it arrived: a cache or a path that hands on an
    /// old list cannot hide a revocation longer than the freshness bound.
    /// An insurer whose list cannot be read (or verified) keeps the list
    /// read before; the error names it.
    pub async fn read_revocations(
        &self,
        client: &reqwest::Client,
        host: &str,
    ) -> anyhow::Result<()> {
        let max_age = self
            .revocations_max_age
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(u64::MAX);
        let mut failed = Vec::new();
        for (id, _) in &self.config.insurers {
            let url = format!("{}/api/v1/issuers/{id}/revoked", host.trim_end_matches('/'));
            let read = async {
                let answer = client.get(&url).send().await?.error_for_status()?;
                let answer = answer.json::<HostStatusList>().await?;
                let signed = answer
                    .signed
                    .context("the host's answer is not signed (an earlier host?)")?;
                let list = credentials::verify_status_list(
                    &signed,
                    &self.config.host_key,
                    id,
                    (self.now)(),
                    max_age,
                )?;
                anyhow::Ok(list)
            };
            let list = match read.await {
                Ok(list) => list,
                Err(e) => {
                    failed.push(format!("{id}: {e:#}"));
                    continue;
                }
            };
            let mut revoked = self.revoked.write().unwrap_or_else(|p| p.into_inner());
            match revoked.get(id) {
                // An older list handed on again must not undo a revocation
                // a newer one showed.
                Some(held) if held.at > list.iat => failed.push(format!(
                    "{id}: the host's list is older (listed at {}) than the one held (at {})",
                    list.iat, held.at
                )),
                _ => {
                    revoked.insert(
                        id.clone(),
                        Listed {
                            at: list.iat,
                            revoked: list.revoked,
                        },
                    );
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("cannot read revocations from {host}: {}", failed.join("; "))
        }
    }

    /// From now on a policy counts only while every insurer's list held was
    /// listed by the host at most `max_age_secs` ago, and no older list is
    /// taken: a host that stops answering (or a path that keeps its answers
    /// away, or hands on an old one) cannot keep a revoked policy counting.
    pub fn require_fresh_revocations(&self, max_age_secs: u64) {
        *self
            .revocations_max_age
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(max_age_secs);
    }

    /// Why a policy cannot be checked against its insurer's revocations
    /// now, if it cannot: some insurer's list is missing or was listed
    /// longer ago than allowed.
    fn revocations_stale(&self) -> Option<String> {
        let max_age = (*self
            .revocations_max_age
            .lock()
            .unwrap_or_else(|p| p.into_inner()))?;
        let now = (self.now)();
        let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        let fresh = self.config.insurers.iter().all(|(id, _)| {
            revoked
                .get(id)
                .is_some_and(|l| now.saturating_sub(l.at) <= max_age)
        });
        (!fresh).then(|| {
            "the hospital cannot check its insurers' revocations right now (the host has not answered); the full fee stands".to_string()
        })
    }

    /// The ids `issuer` has revoked, as last read.
    pub fn revoked(&self, issuer: &str) -> Vec<String> {
        let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        revoked
            .get(issuer)
            .map(|l| l.revoked.clone())
            .unwrap_or_default()
    }

    /// Change the books with `change` and keep them: written and synced
    /// before the answer. Where they cannot be written the change is
    /// undone and the caller told to try again (`503`): nothing is
    /// answered that a restart would forget.
    fn change<R>(
        &self,
        change: impl FnOnce(&mut Books) -> Result<R, Refused>,
    ) -> Result<R, Refused> {
        let mut books = self.books();
        let Some(path) = &self.config.books else {
            return change(&mut books);
        };
        let before = books.clone();
        let answer = change(&mut books)?;
        if let Err(e) = write_whole(path, &serde_json::to_vec(&*books).unwrap_or_default()) {
            *books = before;
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the books cannot be kept right now ({e}); try again"),
            ));
        }
        Ok(answer)
    }

    /// Every booking, for the hospital's own staff (and tests).
    pub fn bookings(&self) -> Vec<Booking> {
        self.books().all()
    }

    /// The patient a request is from: the host's assertion, checked.
    fn patient(&self, headers: &HeaderMap) -> Result<String, Refused> {
        let header = headers
            .get(assertion::HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "no superapp-assertion"))?;
        let a = assertion::verify(
            header,
            &self.config.host_key,
            &self.config.origin,
            (self.now)(),
        )
        .map_err(|e| error(StatusCode::UNAUTHORIZED, e.to_string()))?;
        // Another app on the same host may list this origin too: its users
        // are not this hospital's patients.
        if a.app != self.config.app {
            return Err(error(
                StatusCode::FORBIDDEN,
                format!("`{}` is not the hospital's app", a.app),
            ));
        }
        Ok(a.sub)
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn doctor(&self, id: &str) -> Result<&hospital_schedule::Doctor, Refused> {
        self.catalog
            .doctor(id)
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such doctor"))
    }

    /// Check a shared insurance policy for `booking` of `patient`.
    fn policy(
        &self,
        patient: &str,
        booking: &Booking,
        envelope: &credentials::PresentationEnvelope,
        now: u64,
    ) -> Result<(Insurance, String), String> {
        let payload: credentials::CredentialPayload =
            credentials::peek(&envelope.credential).map_err(|e| e.to_string())?;
        if payload.credential_type != hospital_schedule::POLICY_TYPE {
            return Err(format!(
                "a `{}` is not a health-insurance policy",
                payload.credential_type
            ));
        }
        let Some((_, issuer_key)) = self
            .config
            .insurers
            .iter()
            .find(|(id, _)| *id == payload.iss)
        else {
            return Err(format!(
                "the hospital does not accept policies of `{}`",
                payload.iss
            ));
        };
        if let Some(stale) = self.revocations_stale() {
            return Err(stale);
        }
        let trust = credentials::Trust {
            issuer_key: *issuer_key,
            host_key: self.config.host_key,
            revoked: self.revoked(&payload.iss),
        };
        let expected = credentials::Expected {
            audience: self.config.app.clone(),
            nonce: None,
            max_age_secs: PRESENTATION_MAX_AGE_SECS,
        };
        let verified = credentials::verify_presentation(envelope, &trust, &expected, now)
            .map_err(|e| e.to_string())?;
        if verified.binding.user.as_deref() != Some(patient) {
            return Err("the policy was shared by another patient".into());
        }
        let day = clock::parse_date(&booking.day).unwrap_or(i64::MAX);
        let claims = verified
            .claims
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_str()));
        let insurance = Insurance::from_claims(claims, day)?;
        Ok((insurance, verified.binding.nonce))
    }
}

impl Hospital {
    /// Check a delivered policy for its booking and record the outcome.
    fn check_policy(&self, books: &mut Books, patient: &str, check: books::ToCheck) {
        let outcome = self.policy(patient, &check.booking, &check.envelope, (self.now)());
        let co_payment = self
            .catalog
            .doctor(&check.booking.doctor)
            .map_or(check.booking.fee, |d| d.co_payment);
        books.policy_checked(&check.booking.reference, outcome, co_payment);
    }
}

type Shared = Arc<Hospital>;

/// The backend's routes; `/superapp/callbacks` is the URL the app's
/// manifest names under `[callbacks]`.
pub fn router(hospital: Shared) -> Router {
    Router::new()
        .route("/api/catalog", get(catalog))
        .route("/api/doctors/{id}/days/{day}", get(day))
        .route("/api/doctors/{id}/next-free", get(next_free))
        .route("/api/holds", post(hold))
        .route("/api/holds/{reference}/insurance", post(insurance))
        .route("/api/holds/{reference}/paid", post(paid))
        .route("/api/appointments", get(appointments))
        .route("/api/holds/{reference}/release", post(release))
        .route("/api/appointments/{reference}/cancel", post(cancel))
        .route("/superapp/callbacks", post(callback))
        .with_state(hospital)
}

async fn catalog(State(h): State<Shared>, headers: HeaderMap) -> Answer {
    h.patient(&headers)?;
    Ok(Json(&h.catalog).into_response())
}

/// A doctor's free times on a day (from now on) and the booked ones.
async fn day(
    State(h): State<Shared>,
    headers: HeaderMap,
    Path((id, date)): Path<(String, String)>,
) -> Answer {
    h.patient(&headers)?;
    let doctor = h.doctor(&id)?;
    let day = clock::parse_date(&date)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "the day is a date like 2026-12-02"))?;
    let (free, booked) = h.books().day(&h.catalog, doctor, day, (h.now)());
    Ok(Json(json!({"doctor": id, "day": date, "free": free, "booked": booked})).into_response())
}

async fn next_free(State(h): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    h.patient(&headers)?;
    let doctor = h.doctor(&id)?;
    let next = h.books().next_free(&h.catalog, doctor, (h.now)());
    Ok(Json(match next {
        Some((day, at)) => json!({"day": clock::format_date(day), "at": at}),
        None => json!({"day": null}),
    })
    .into_response())
}

/// Hold a free slot for the asserted patient; the app then asks the host
/// for the payment with `REFERENCE-AMOUNT` as its idempotency key.
async fn hold(State(h): State<Shared>, headers: HeaderMap, Body(req): Body<HoldRequest>) -> Answer {
    let patient = h.patient(&headers)?;
    let now = (h.now)();
    let booking = h.change(|books| Ok(books.hold(&h.catalog, &patient, &req, now)?))?;
    Ok((StatusCode::CREATED, Json(booking)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyRequest {
    /// The host's document request the patient answers.
    request: String,
}

/// The app asked the patient for their policy for a hold: it will come
/// from the host, signed, under this document request (the app never
/// holds it). Verified, it lowers what they owe to the co-payment.
async fn insurance(
    State(h): State<Shared>,
    headers: HeaderMap,
    Path(reference): Path<String>,
    Body(req): Body<PolicyRequest>,
) -> Answer {
    let patient = h.patient(&headers)?;
    let booking = h.change(|books| {
        if let Some(check) = books.expect_policy(&patient, &reference, &req.request)? {
            h.check_policy(books, &patient, check);
        }
        Ok(books.mine(&patient, &reference)?.clone())
    })?;
    Ok(Json(booking).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaidRequest {
    order: String,
}

/// The app says the patient paid: the slot stays theirs until the host's
/// callback confirms it (`paying`), or is `lost` if someone took it after
/// the hold ran out.
async fn paid(
    State(h): State<Shared>,
    headers: HeaderMap,
    Path(reference): Path<String>,
    Body(req): Body<PaidRequest>,
) -> Answer {
    let patient = h.patient(&headers)?;
    let now = (h.now)();
    let booking = h.change(|books| Ok(books.paying(&patient, &reference, &req.order, now)?))?;
    Ok(Json(booking).into_response())
}

async fn appointments(State(h): State<Shared>, headers: HeaderMap) -> Answer {
    let patient = h.patient(&headers)?;
    Ok(Json(json!({"appointments": h.books().all_of(&patient)})).into_response())
}

/// Give up an unpaid hold: the slot is free again.
async fn release(
    State(h): State<Shared>,
    headers: HeaderMap,
    Path(reference): Path<String>,
) -> Answer {
    let patient = h.patient(&headers)?;
    let booking = h.change(|books| Ok(books.release(&patient, &reference)?))?;
    Ok(Json(booking).into_response())
}

/// Cancel a booking: the slot is free again. The refund the app makes is
/// confirmed by the host's callback.
async fn cancel(
    State(h): State<Shared>,
    headers: HeaderMap,
    Path(reference): Path<String>,
) -> Answer {
    let patient = h.patient(&headers)?;
    let booking = h.change(|books| Ok(books.cancel(&patient, &reference)?))?;
    Ok(Json(booking).into_response())
}

/// The host's signed payment callbacks: a settled payment makes its
/// booking final; a refund is recorded. Each delivery id is applied once;
/// a retry is acknowledged.
async fn callback(State(h): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Answer {
    let Some(header) = headers.get(callbacks::HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(error(StatusCode::UNAUTHORIZED, "no superapp-signature"));
    };
    let now = (h.now)();
    let n = callbacks::verify(header, &body, &h.config.host_key, now)
        .map_err(|e| error(StatusCode::UNAUTHORIZED, e.to_string()))?;
    if n.app != h.config.app {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!("`{}` is not the hospital's app", n.app),
        ));
    }
    if n.kind == "document.presented" && n.presentation.is_none() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "a presentation without its document",
        ));
    }
    let answer = h.change(|books| {
        if !books.applied.insert(n.id.clone()) {
            return Ok(json!({"applied": false, "reason": "already applied"}));
        }
        let refund_due = match (n.kind.as_str(), n.presentation) {
            // Fees are in the catalog's currency: other money buys nothing.
            ("payment.settled", _) if n.currency != h.catalog.currency => Some(n.amount),
            ("payment.settled", _) => books.settled(&n.user, &n.reference, &n.order, n.amount, now),
            ("payment.refunded", _) => {
                books.refunded(&n.user, &n.reference, &n.order, n.refunded);
                None
            }
            ("document.presented", Some(envelope)) => {
                if let Some(check) = books.presented(&n.user, &n.reference, envelope) {
                    h.check_policy(books, &n.user, check);
                }
                None
            }
            _ => None,
        };
        Ok(json!({"applied": true, "refund_due": refund_due}))
    })?;
    Ok(Json(answer).into_response())
}

/// Seconds since the Unix epoch by the system clock.
pub fn system_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serve the backend on `listener` by the system clock until the task is
/// dropped or the listener fails.
/// An issuer's status list as the host serves it: of what it holds, only
/// the host's signed copy is read.
#[derive(Deserialize)]
struct HostStatusList {
    signed: Option<credentials::Signed>,
}

/// The client the hospital reads the host with: TLS by ring (the host's
/// crypto too), ten seconds for a whole request.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot make an HTTP client")
}

/// Where and how often the hospital reads its insurers' revocations. A
/// policy counts only while the lists were read whole within five reads'
/// time (at least five minutes).
#[derive(Debug, Clone)]
pub struct Revocations {
    /// The host's base URL.
    pub host: String,
    pub every: Duration,
    /// Serve at once and read the lists as soon as the host answers (a
    /// host started beside the backend, as the demo's), rather than read
    /// them before serving.
    pub host_starting: bool,
}

/// Serve the hospital on `listener`. With `revocations`, the insurers'
/// status lists are read from the host before the first request (a host
/// that cannot be read stops the start: a policy its insurer revoked must
/// not lower a fee; with `host_starting`, tried every second until the
/// host answers) and again every `every`, a failed read logged and the
/// lists read before kept.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    revocations: Option<Revocations>,
) -> anyhow::Result<()> {
    let hospital = Arc::new(Hospital::open(config, Box::new(system_now))?);
    if let Some(r) = revocations {
        hospital.require_fresh_revocations((r.every.as_secs() * 5).max(300));
        let client = http_client()?;
        if !r.host_starting {
            hospital.read_revocations(&client, &r.host).await?;
        }
        let following = hospital.clone();
        tokio::spawn(async move {
            if r.host_starting {
                while following.read_revocations(&client, &r.host).await.is_err() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            loop {
                tokio::time::sleep(r.every).await;
                if let Err(e) = following.read_revocations(&client, &r.host).await {
                    eprintln!("{e:#}; the lists read before still hold");
                }
            }
        });
    }
    axum::serve(listener, router(hospital)).await?;
    Ok(())
}

/// Replace `path` with `bytes` whole: written beside it, synced, renamed
/// over it, and the rename synced, so a crash leaves the old books or the
/// new ones.
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    let fresh = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // Patients' pseudonyms and their orders: for the hospital's eyes only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&fresh)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&fresh, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
