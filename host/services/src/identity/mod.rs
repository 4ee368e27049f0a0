//! Accounts and sessions: registration with username rules, PBKDF2 password
//! hashes, login with throttling, bearer/cookie sessions stored only as
//! hashes, and the host secret behind per-app pseudonymous ids.

mod familiar;
mod hashing;
mod password;
mod pseudonyms;
mod secret;
mod throttle;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

pub use password::PasswordHash;
pub use secret::{load_or_create_private, load_or_create_secret, Secrets};
pub use throttle::{Limited, Throttle};

pub use pseudonyms::Pseudonyms;
use superapp_core::ids::random_bytes;
pub use superapp_core::{new_id, now_secs};
use superapp_store::{txn_get, txn_put, Abort, Store, StoreError, Tree};

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub created_at: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredUser {
    user: User,
    password: PasswordHash,
    /// Shown in the host's own dialogs so the user can tell them from
    /// anything an app draws. Only the user ever sees it.
    #[serde(default)]
    security_phrase: String,
    /// Raised by a password change: sessions begun before it end.
    #[serde(default)]
    sessions: u32,
    /// Who may add this user to groups.
    #[serde(default)]
    group_adds: GroupAdds,
}

/// Who may add a user to groups: a privacy setting of theirs, since a
/// group anyone can put you in is a way to reach you with what you did not
/// ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupAdds {
    /// Anyone with an account (the default).
    #[default]
    Everyone,
    /// Only people the user has written to in a direct conversation.
    Contacts,
    /// Nobody: the user is only in groups they created.
    Nobody,
}

/// Longest security phrase, in characters (as the shell's form counts).
pub const MAX_SECURITY_PHRASE: usize = 60;

/// A phrase for users who did not choose one: two words and a number.
fn suggested_phrase() -> String {
    const WORDS: [&str; 32] = [
        "amber", "birch", "cedar", "delta", "ember", "fjord", "glade", "harbor", "iris", "juniper",
        "kestrel", "lagoon", "maple", "nectar", "orchid", "pebble", "quartz", "raven", "saffron",
        "tundra", "umber", "violet", "willow", "yarrow", "zephyr", "lantern", "meadow", "comet",
        "otter", "heron", "cobalt", "thistle",
    ];
    let r: [u8; 3] = superapp_core::ids::random_bytes();
    format!(
        "{} {} {}",
        WORDS[usize::from(r[0]) % WORDS.len()],
        WORDS[usize::from(r[1]) % WORDS.len()],
        10 + u32::from(r[2]) % 90
    )
}

/// The phrase the host's dialogs show, so a user can tell them from an
/// app's imitation: it must read as what the user chose, so it has at
/// least four characters that show and nothing that turns text around.
fn check_security_phrase(phrase: &str) -> Result<String, IdentityError> {
    use superapp_core::text::{disallowed_in_label, visible_chars};
    let phrase = phrase.trim();
    if phrase.chars().count() > MAX_SECURITY_PHRASE
        || visible_chars(phrase) < 4
        || phrase.chars().any(disallowed_in_label)
    {
        return Err(IdentityError::InvalidInput(format!(
            "a security phrase is 4 to {MAX_SECURITY_PHRASE} characters, at least 4 of them visible, without control or text-direction characters"
        )));
    }
    Ok(phrase.to_string())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    user_id: String,
    created_at: u64,
    expires_at: u64,
    revoked: bool,
    /// The account's [`StoredUser::sessions`] when the session began (or
    /// was kept through a password change); any other value ends it.
    #[serde(default)]
    generation: u32,
}

/// A session just created: the token is shown once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct NewSession {
    pub token: String,
    pub expires_at: u64,
    pub user: User,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub password_iterations: NonZeroU32,
    pub session_ttl: Duration,
    /// Wrong passwords allowed in `window`: per account from one client
    /// address (a login) or per session (a confirmation); per account from
    /// everywhere; per client address over all accounts. The last two stop
    /// neither an account's logins from an address it signed in from
    /// lately ([`familiar::KEPT`]) nor its sessions' confirmations.
    pub max_failures_per_user: u32,
    pub max_failures_per_account: u32,
    pub max_failures_per_client: u32,
    pub failure_window: Duration,
    /// Password hashes that run at once (the rest wait their turn).
    pub hash_slots: std::num::NonZeroUsize,
    /// Sign-ups one client address may make in [`SIGNUP_WINDOW`].
    pub max_signups_per_client: u32,
}

/// The window of the per-address sign-up limit.
pub const SIGNUP_WINDOW: Duration = Duration::from_secs(3600);

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            password_iterations: NonZeroU32::new(600_000).expect("non-zero"),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            max_failures_per_user: 5,
            max_failures_per_account: 50,
            max_failures_per_client: 20,
            failure_window: Duration::from_secs(15 * 60),
            hash_slots: hashing::default_slots(),
            // Many users may share an address behind a carrier's NAT.
            max_signups_per_client: 100,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("that username is taken")]
    UsernameTaken,
    /// Another username reads the same (`bob.` beside `bob`, `rn` for `m`):
    /// people tell each other apart by username.
    #[error("that username reads like `{0}`, which is taken; choose one that reads differently")]
    UsernameLookAlike(String),
    /// Every password-hashing slot stayed taken for as long as a hash may
    /// wait for one.
    #[error("the host is busy checking passwords; try again in a few seconds")]
    Busy,
    #[error("wrong username or password")]
    BadCredentials,
    #[error("too many wrong passwords; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error("too many sign-ups from this address; try again in {retry_after_secs} s")]
    SignUpsThrottled { retry_after_secs: u64 },
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

superapp_store::abort_into!(IdentityError);

pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 1024;

/// 3–32 characters of lowercase letters, digits, `_` and `.`, starting with
/// a letter. Input is lowercased first, so names are case-insensitive.
pub fn normalize_username(raw: &str) -> Result<String, IdentityError> {
    let name = raw.trim().to_lowercase();
    let ok = (3..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if ok {
        Ok(name)
    } else {
        Err(IdentityError::InvalidInput(
            "a username is 3-32 characters: letters, digits, `_` or `.`, starting with a letter"
                .into(),
        ))
    }
}

/// Where the usernames tree keeps each username's skeletons
/// (`superapp_core::text::skeletons`: what it reads as, with case,
/// punctuation and look-alike letters set aside), each naming the username
/// that holds it. A username starts with a letter, so the prefix is no
/// username's.
const LOOKS: &[u8] = b"\0looks\0";

fn username_looks(username: &str) -> Vec<Vec<u8>> {
    superapp_core::text::skeletons(username)
        .into_iter()
        .map(|s| [LOOKS, s.as_bytes()].concat())
        .collect()
}

fn check_display_name(name: &str) -> Result<String, IdentityError> {
    let name = name.trim();
    match superapp_core::text::label_problem(name, 64) {
        None => Ok(name.to_string()),
        Some(problem) => Err(IdentityError::InvalidInput(format!(
            "a display name is 1-64 characters, some visible: it {problem}"
        ))),
    }
}

/// A sign-up's input, checked.
struct NewAccount<'a> {
    username: String,
    display_name: String,
    password: &'a str,
    security_phrase: String,
}

impl<'a> NewAccount<'a> {
    fn check(
        username: &str,
        display_name: &str,
        password: &'a str,
        security_phrase: Option<&str>,
    ) -> Result<NewAccount<'a>, IdentityError> {
        let username = normalize_username(username)?;
        let display_name = check_display_name(display_name)?;
        let security_phrase = match security_phrase {
            Some(p) => check_security_phrase(p)?,
            None => suggested_phrase(),
        };
        check_new_password(password)?;
        Ok(NewAccount {
            username,
            display_name,
            password,
            security_phrase,
        })
    }
}

fn check_new_password(password: &str) -> Result<(), IdentityError> {
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&password.len()) {
        return Err(IdentityError::InvalidInput(format!(
            "a password is {MIN_PASSWORD} to {MAX_PASSWORD} bytes"
        )));
    }
    Ok(())
}

/// The throttles' key for a client address: the address itself, or for
/// IPv6 its /64 network, which one subscriber usually holds whole (so
/// cycling through its addresses gains nothing).
fn client_key(client: IpAddr) -> String {
    match client {
        IpAddr::V4(v4) => format!("client:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("client:{v4}"),
            None => {
                let s = v6.segments();
                format!("client:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn token_key(token: &str) -> Vec<u8> {
    digest(&SHA256, token.as_bytes()).as_ref().to_vec()
}

pub struct Identity {
    store: Arc<Store>,
    config: IdentityConfig,
    /// Failed logins per account and client address.
    users_throttle: Throttle,
    /// Failed logins per account from everywhere.
    accounts_throttle: Throttle,
    clients_throttle: Throttle,
    signups_throttle: Throttle,
    familiar: familiar::Familiar,
    /// Verified against when the username is unknown, so a wrong username
    /// costs the same time as a wrong password.
    decoy: PasswordHash,
    hashing: hashing::Hashing,
    /// Sessions checked recently: token digest → (user, expiry). Sessions
    /// end only through `logout` and `change_password`, which evict, so a
    /// hit is current.
    /// Not used on a shared store, where another process may log out.
    live_sessions: std::sync::Mutex<std::collections::HashMap<Vec<u8>, (User, u64)>>,
    /// Raised at every eviction from `live_sessions`: a check that read the
    /// store before one caches nothing, so a session that ended cannot be
    /// put back by a check that raced its end.
    evictions: std::sync::atomic::AtomicU64,
    /// Notices of sessions ended in this process, per user with live
    /// connections ([`Identity::watch_session`]): a logout wakes only the
    /// connections of its own user.
    watchers: Watchers,
    /// Where notices also go to the other processes on a shared store.
    relay: std::sync::OnceLock<Arc<dyn SessionRelay>>,
}

/// Carries notices that sessions ended to the other host processes on one
/// store (the bus), whose live connections of those sessions then close
/// at once rather than at their next check. A notice lost on the way
/// costs only that wait: the store is the record.
pub trait SessionRelay: Send + Sync {
    /// `notice` (opaque) may have ended some of `user`'s sessions.
    fn ended(&self, user: &str, notice: &[u8]);
}

/// A channel per user whose sessions are watched: the digest of each of
/// their sessions logged out, or their [`user_notice`]. A user's entry
/// goes with their last watch.
type Watchers = Arc<
    std::sync::Mutex<std::collections::HashMap<String, tokio::sync::broadcast::Sender<Arc<[u8]>>>>,
>;

/// How many notices a user's watches may fall behind by before they ask
/// whether their session still holds.
const WATCH_BACKLOG: usize = 16;

/// Notices of a session's end in this process: a logout of the session
/// it watches, a password change of its account, or notices it missed (it fell behind), after which its
/// holder asks [`Identity::authenticate`] whether the session still holds.
pub struct SessionWatch {
    rx: tokio::sync::broadcast::Receiver<Arc<[u8]>>,
    key: Vec<u8>,
    notice: Arc<[u8]>,
    user: String,
    watchers: Watchers,
}

impl Drop for SessionWatch {
    fn drop(&mut self) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        // Subscribing takes this lock too: a count of one is this watch's.
        if watchers
            .get(&self.user)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            watchers.remove(&self.user);
        }
    }
}

/// The notice that some of `user`'s sessions ended (a password change).
/// Session notices are 32-byte digests; this one is longer.
fn user_notice(user: &str) -> Arc<[u8]> {
    [b"user\0".as_slice(), user.as_bytes()].concat().into()
}

impl SessionWatch {
    /// Whether `notice` names the watched session or its account.
    fn is_mine(&self, notice: &[u8]) -> bool {
        *notice == *self.key || *notice == *self.notice
    }

    /// Whether a notice that the session may have ended is waiting now
    /// (without waiting for one).
    pub fn noticed(&mut self) -> bool {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            match self.rx.try_recv() {
                Ok(key) if self.is_mine(&key) => return true,
                Ok(_) => continue,
                Err(TryRecvError::Lagged(_)) => return true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return false,
            }
        }
    }

    /// Resolves when the session may have ended; never if this process
    /// stops sending notices.
    pub async fn ended(&mut self) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match self.rx.recv().await {
                Ok(key) if self.is_mine(&key) => return,
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => return,
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

/// An attempt (a password check, a sign-up) holding its place in a
/// throttle window from [`Attempt::begin`] to [`Attempt::finish`].
struct Attempt<'a> {
    throttle: &'a Throttle,
    key: &'a str,
    /// Whether an attempt dropped before it finished (its request went
    /// away mid-way) counts: a sign-up may have made its account by then.
    counted_if_dropped: bool,
    running: bool,
}

impl<'a> Attempt<'a> {
    async fn begin(
        throttle: &'a Throttle,
        key: &'a str,
        counted_if_dropped: bool,
    ) -> Result<Attempt<'a>, Limited> {
        throttle.begin(key).await?;
        Ok(Attempt {
            throttle,
            key,
            counted_if_dropped,
            running: true,
        })
    }

    /// End the attempt: an event in the window if `counted`, else its
    /// place is freed. On an error the place stays held until the
    /// throttle frees it ([`throttle::IN_FLIGHT_MAX`]).
    fn finish(mut self, counted: bool) -> Result<(), Limited> {
        self.running = false;
        self.throttle.end(self.key, counted)
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.running {
            let _ = self.throttle.end(self.key, self.counted_if_dropped);
        }
    }
}

/// Sessions kept in `live_sessions` before it starts over.
const SESSION_CACHE: usize = 100_000;

impl From<Limited> for IdentityError {
    fn from(limited: Limited) -> Self {
        match limited {
            Limited::Wait(retry_after_secs) => IdentityError::Throttled { retry_after_secs },
            Limited::Store(e) => IdentityError::Store(e),
        }
    }
}

impl Identity {
    /// Index the skeletons of usernames made before they were indexed
    /// (once per store; the first of two that read alike keeps its).
    pub fn index_existing_usernames(store: &Store) -> Result<usize, IdentityError> {
        const DONE: &[u8] = b"usernames-looks-indexed";
        if store.get_raw(Tree::Meta, DONE)?.is_some() {
            return Ok(0);
        }
        let mut indexed = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan(Tree::Usernames, b"", after.as_deref(), 1000, false)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let names: Vec<String> = page
                .iter()
                .filter(|(k, _)| !k.starts_with(b"\0"))
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                .collect();
            indexed += store.transact(&[Tree::Usernames], |t| {
                let mut n = 0;
                for name in &names {
                    for look in username_looks(name) {
                        if t.get(Tree::Usernames, &look)?.is_none() {
                            txn_put(t, Tree::Usernames, &look, name)?;
                            n += 1;
                        }
                    }
                }
                Ok::<_, Abort<IdentityError>>(n)
            })?;
        }
        store.transact(&[Tree::Meta], |t| {
            t.put(Tree::Meta, DONE, b"1")?;
            Ok::<_, Abort<IdentityError>>(())
        })?;
        Ok(indexed)
    }

    pub fn new(store: Arc<Store>, config: IdentityConfig) -> Identity {
        Identity {
            live_sessions: Default::default(),
            evictions: Default::default(),
            watchers: Default::default(),
            relay: Default::default(),
            users_throttle: Throttle::for_store(
                &store,
                "login-user",
                config.max_failures_per_user,
                config.failure_window,
            ),
            accounts_throttle: Throttle::for_store(
                &store,
                "login-account",
                config.max_failures_per_account,
                config.failure_window,
            ),
            familiar: familiar::Familiar::new(store.clone()),
            clients_throttle: Throttle::for_store(
                &store,
                "login-client",
                config.max_failures_per_client,
                config.failure_window,
            ),
            signups_throttle: Throttle::for_store(
                &store,
                "signup-client",
                config.max_signups_per_client,
                SIGNUP_WINDOW,
            ),
            decoy: PasswordHash::new("decoy password", config.password_iterations),
            hashing: hashing::Hashing::new(config.hash_slots, hashing::HASH_WAIT),
            store,
            config,
        }
    }

    /// Create an account. `security_phrase` is what the host's dialogs will
    /// show the user; one is suggested when they give none.
    pub async fn register(
        &self,
        username: &str,
        display_name: &str,
        password: &str,
        security_phrase: Option<&str>,
    ) -> Result<User, IdentityError> {
        let account = NewAccount::check(username, display_name, password, security_phrase)?;
        self.create(account).await
    }

    /// The hash of a password being set: a new account's (in its turn
    /// after existing accounts' hashes) or a changed one (`turn` says which).
    async fn hash_new(
        &self,
        password: &str,
        turn: hashing::Turn,
    ) -> Result<PasswordHash, IdentityError> {
        let iterations = self.config.password_iterations;
        let password = password.to_string();
        self.hashing
            .run(turn, move || PasswordHash::new(&password, iterations))
            .await
    }

    async fn create(&self, account: NewAccount<'_>) -> Result<User, IdentityError> {
        let NewAccount {
            username,
            display_name,
            password,
            security_phrase,
        } = account;
        if self
            .store
            .get_raw(Tree::Usernames, username.as_bytes())?
            .is_some()
        {
            return Err(IdentityError::UsernameTaken);
        }
        let looks = username_looks(&username);
        for look in &looks {
            if let Some(other) = self.store.get::<String>(Tree::Usernames, look)? {
                return Err(IdentityError::UsernameLookAlike(other));
            }
        }
        let hash = self.hash_new(password, hashing::Turn::NewAccount).await?;
        let user = User {
            id: new_id(),
            username: username.clone(),
            display_name,
            created_at: now_secs(),
        };
        let stored = StoredUser {
            user: user.clone(),
            password: hash,
            security_phrase,
            sessions: 0,
            group_adds: GroupAdds::default(),
        };
        self.store
            .transact(&[Tree::Usernames, Tree::Users], |txn| {
                if txn.get(Tree::Usernames, username.as_bytes())?.is_some() {
                    return Err(Abort::User(IdentityError::UsernameTaken));
                }
                for look in &looks {
                    if let Some(other) = txn_get::<String>(txn, Tree::Usernames, look)? {
                        return Err(Abort::User(IdentityError::UsernameLookAlike(other)));
                    }
                    txn_put(txn, Tree::Usernames, look, &username)?;
                }
                txn.put(Tree::Usernames, username.as_bytes(), user.id.as_bytes())?;
                txn_put(txn, Tree::Users, user.id.as_bytes(), &stored)?;
                Ok(())
            })?;
        self.store.durable().await?;
        Ok(user)
    }

    /// Create an account for someone at `client`: [`Identity::register`]
    /// under the per-address sign-up limit, which counts every attempt that
    /// reached the username (an account made, or a name found taken, or a
    /// request dropped mid-way, which may have made its account), so one
    /// address can neither fill the host with accounts nor probe names at
    /// will. Bad input is refused before it takes a place; attempts running
    /// at once hold their places, so a burst cannot pass the check before
    /// any of it is counted.
    pub async fn sign_up(
        &self,
        username: &str,
        display_name: &str,
        password: &str,
        security_phrase: Option<&str>,
        client: IpAddr,
    ) -> Result<User, IdentityError> {
        let account = NewAccount::check(username, display_name, password, security_phrase)?;
        let key = client_key(client);
        let attempt = Attempt::begin(&self.signups_throttle, &key, true)
            .await
            .map_err(|limited| match limited {
                Limited::Wait(retry_after_secs) => {
                    IdentityError::SignUpsThrottled { retry_after_secs }
                }
                Limited::Store(e) => IdentityError::Store(e),
            })?;
        let outcome = self.create(account).await;
        let counted = matches!(outcome, Ok(_) | Err(IdentityError::UsernameTaken));
        if let Err(e) = attempt.finish(counted) {
            // The account (if made) stands. This attempt's count is lost, and
            // its place stays held until the throttle frees it.
            tracing::warn!(error = %e, "could not count a sign-up");
        }
        outcome
    }

    /// Check `password` for `username` under the failed-attempt throttles:
    /// a login's attempt window is its account at its client address, a
    /// step-up confirmation's its `session` (so a stolen session cannot
    /// guess through payment sheets more than that, wherever it sends them
    /// from); both count in the account's and the address's windows, which
    /// stop neither a confirmation nor a login from an address the account
    /// signed in from lately: others' guesses cannot lock a user out.
    async fn check_password(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
        session: Option<&str>,
    ) -> Result<(User, u32), IdentityError> {
        let username = normalize_username(username).map_err(|_| IdentityError::BadCredentials)?;
        let account_key = format!("user:{username}");
        let client_key = client_key(client);
        let in_session = session.is_some();
        // A confirmation is counted against its session, wherever it comes
        // from (a stolen session gains nothing by changing address, nor do
        // guesses at the login from the user's network stop it); a login
        // against its account at its address.
        let attempt_key = match session {
            Some(token) => format!("session:{}", B64URL.encode(token_key(token))),
            None => format!("user:{username}@{client_key}"),
        };
        // The client address's and the account's windows count failures
        // after the fact: holding places there would cap the logins of
        // everyone behind one carrier's NAT, and of a user whom others are
        // guessing at. Neither stops a user where they signed in lately, nor
        // their session: guesses from their network (another subscriber
        // behind the same NAT) or at their account cannot lock them out,
        // and the window of their account at that address still holds.
        let known = in_session || self.familiar.contains(&username, &client_key, now_secs())?;
        if !known {
            self.clients_throttle.check(&client_key)?;
            self.accounts_throttle.check(&account_key)?;
        }
        // An attempt holds a place in its account and address's window
        // while the password is checked: parallel guesses, on however many
        // nodes, cannot all pass a check made before any is counted. A
        // request dropped meanwhile (its client went away) gives its place
        // back rather than holding it for `IN_FLIGHT_MAX`: the password was
        // never checked.
        let attempt = Attempt::begin(&self.users_throttle, &attempt_key, false).await?;
        let outcome = self.verify(&username, password).await;
        let wrong = matches!(outcome, Ok(None));
        let ended = attempt.finish(wrong).and_then(|()| {
            if wrong {
                self.clients_throttle.record(&client_key)?;
                self.accounts_throttle.record(&account_key)
            } else {
                Ok(())
            }
        });
        let found = match outcome? {
            Some(found) => found,
            None => {
                ended?;
                return Err(IdentityError::BadCredentials);
            }
        };
        ended?;
        // The account's window is left as it is: a guesser elsewhere gains
        // nothing from its user signing in.
        self.users_throttle.clear(&attempt_key)?;
        if !in_session {
            self.familiar.remember(&username, &client_key, now_secs())?;
        }
        Ok(found)
    }

    /// The user `username` names if `password` is theirs (`None`
    /// otherwise), taking as long either way, with the account's session
    /// generation that password belongs to.
    async fn verify(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<(User, u32)>, IdentityError> {
        let stored: Option<StoredUser> =
            match self.store.get_raw(Tree::Usernames, username.as_bytes())? {
                Some(id) => self.store.get(Tree::Users, &id)?,
                None => None,
            };
        let (hash, user) = match stored {
            Some(s) => (s.password, Some((s.user, s.sessions))),
            None => (self.decoy.clone(), None),
        };
        let candidate = password.to_string();
        let cost = self.config.password_iterations;
        let checked = hash.clone();
        let matches = self
            .hashing
            .run(hashing::Turn::Existing, move || {
                checked.verify_at_cost(&candidate, cost)
            })
            .await?;
        let user = user.filter(|_| matches);
        if let Some((found, _)) = &user {
            if hash.cheaper_than(cost) {
                self.rehash(&found.id, &hash, password).await?;
            }
        }
        Ok(user)
    }

    /// Hash `password`, found right against `old` (made at an earlier,
    /// lower cost), again at today's cost, unless the account's password
    /// changed meanwhile.
    async fn rehash(
        &self,
        user_id: &str,
        old: &PasswordHash,
        password: &str,
    ) -> Result<(), IdentityError> {
        let new = self.hash_new(password, hashing::Turn::Existing).await?;
        self.store.transact(&[Tree::Users], |txn| {
            let stored: Option<StoredUser> = txn_get(txn, Tree::Users, user_id.as_bytes())?;
            if let Some(mut stored) = stored.filter(|s| s.password == *old) {
                stored.password = new.clone();
                txn_put(txn, Tree::Users, user_id.as_bytes(), &stored)?;
            }
            Ok::<_, Abort<IdentityError>>(())
        })?;
        Ok(())
    }

    /// Remove the throttles' records of keys with no recent failures (see
    /// [`Throttle::sweep`]); how many went.
    pub fn sweep_throttles(&self) -> Result<usize, IdentityError> {
        Ok(self.users_throttle.sweep()?
            + self.accounts_throttle.sweep()?
            + self.clients_throttle.sweep()?
            + self.signups_throttle.sweep()?
            + self.familiar.sweep(now_secs())?)
    }

    /// Step-up authentication: the signed-in `user` proves presence by
    /// entering the password again in their session `token` (to confirm a
    /// payment, for example).
    pub async fn confirm_password(
        &self,
        user: &User,
        token: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<(), IdentityError> {
        self.confirm(user, token, password, client)
            .await
            .map(|_| ())
    }

    /// [`Identity::confirm_password`], and the session generation the
    /// password belongs to.
    async fn confirm(
        &self,
        user: &User,
        token: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<u32, IdentityError> {
        let (found, generation) = self
            .check_password(&user.username, password, client, Some(token))
            .await?;
        if found.id != user.id {
            return Err(IdentityError::BadCredentials);
        }
        Ok(generation)
    }

    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<NewSession, IdentityError> {
        let (user, generation) = self
            .check_password(username, password, client, None)
            .await?;
        self.begin_session(user, generation).await
    }

    /// A session for `user`, whose password was found right for their
    /// session `generation`.
    async fn begin_session(
        &self,
        user: User,
        generation: u32,
    ) -> Result<NewSession, IdentityError> {
        let token = B64URL.encode(random_bytes::<32>());
        let now = now_secs();
        let key = token_key(&token);
        // Begun in the generation the password was checked against, if it
        // is still the account's: a password change that came in between
        // (the check takes a while) means the password given is the old
        // one, and no session begins.
        let session = self.store.transact(&[Tree::Users, Tree::Sessions], |txn| {
            let stored: StoredUser = txn_get(txn, Tree::Users, user.id.as_bytes())?
                .filter(|s: &StoredUser| s.sessions == generation)
                .ok_or(Abort::User(IdentityError::BadCredentials))?;
            let session = Session {
                user_id: user.id.clone(),
                created_at: now,
                expires_at: now + self.config.session_ttl.as_secs(),
                revoked: false,
                generation: stored.sessions,
            };
            txn_put(txn, Tree::Sessions, &key, &session)?;
            Ok::<_, Abort<IdentityError>>(session)
        })?;
        self.store.durable().await?;
        Ok(NewSession {
            token,
            expires_at: session.expires_at,
            user,
        })
    }

    /// The user a session token belongs to, if the session is live.
    pub fn authenticate(&self, token: &str) -> Result<User, IdentityError> {
        let key = token_key(token);
        // On a store shared between host processes a logout may come
        // through any of them, so every check asks the store.
        let cached = !self.store.shared();
        if let Some((user, expires_at)) = cached
            .then(|| {
                self.live_sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&key)
                    .cloned()
            })
            .flatten()
        {
            if expires_at > now_secs() {
                return Ok(user);
            }
        }
        let epoch = self.evictions.load(std::sync::atomic::Ordering::SeqCst);
        let session: Session = self
            .store
            .get(Tree::Sessions, &key)?
            .ok_or(IdentityError::Unauthenticated("unknown session"))?;
        if session.revoked {
            return Err(IdentityError::Unauthenticated("the session was revoked"));
        }
        if session.expires_at <= now_secs() {
            return Err(IdentityError::Unauthenticated("the session has expired"));
        }
        let stored: StoredUser = self
            .store
            .get(Tree::Users, session.user_id.as_bytes())?
            .ok_or(IdentityError::Unauthenticated(
                "the account no longer exists",
            ))?;
        if stored.sessions != session.generation {
            return Err(IdentityError::Unauthenticated(
                "signed out: the account's password was changed",
            ));
        }
        let user = stored.user;
        if cached {
            let mut cache = self.live_sessions.lock().unwrap_or_else(|p| p.into_inner());
            if self.evictions.load(std::sync::atomic::Ordering::SeqCst) != epoch {
                // A session ended while this one was read: maybe this one.
                return Ok(user);
            }
            if cache.len() >= SESSION_CACHE {
                cache.clear();
            }
            cache.insert(key, (user.clone(), session.expires_at));
        }
        Ok(user)
    }

    /// Revoke a session. Revoking twice is not an error.
    pub async fn logout(&self, token: &str) -> Result<(), IdentityError> {
        let key = token_key(token);
        let user = self.store.transact(&[Tree::Sessions], |txn| {
            let Some(mut s) = txn_get::<Session>(txn, Tree::Sessions, &key)? else {
                return Ok::<_, Abort<IdentityError>>(None);
            };
            s.revoked = true;
            txn_put(txn, Tree::Sessions, &key, &s)?;
            Ok(Some(s.user_id))
        })?;
        self.evict(|k, _| *k == key);
        self.store.durable().await?;
        if let Some(user) = user {
            self.tell_watches(&user, key.into());
        }
        Ok(())
    }

    /// Tell `user`'s session watches, in this process and through the
    /// relay in the others, that `notice` (a session's digest, or their
    /// [`user_notice`]) may have ended theirs.
    fn tell_watches(&self, user: &str, notice: Arc<[u8]>) {
        if let Some(relay) = self.relay.get() {
            relay.ended(user, &notice);
        }
        self.ended_elsewhere(user, notice);
    }

    /// A notice from another process (see [`SessionRelay`]) for `user`'s
    /// session watches in this one. Each watch checks the store before it
    /// closes anything, so a notice is a hint, never a verdict.
    pub fn ended_elsewhere(&self, user: &str, notice: Arc<[u8]>) {
        let watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = watchers.get(user) {
            let _ = tx.send(notice);
        }
    }

    /// Send notices of sessions ended here to the other processes through
    /// `relay` too (set once, when the bus is joined).
    pub fn set_session_relay(&self, relay: Arc<dyn SessionRelay>) {
        let _ = self.relay.set(relay);
    }

    /// Change `user`'s password, proven by the `current` one (throttled as
    /// a login is): every other session of the account ends, here at once
    /// (with its live connections, on other nodes too where a relay is
    /// set, else at their next check);
    /// the session of `token`, the one asking, goes on.
    pub async fn change_password(
        &self,
        user: &User,
        token: &str,
        current: &str,
        new: &str,
        client: IpAddr,
    ) -> Result<(), IdentityError> {
        check_new_password(new)?;
        let generation = self.confirm(user, token, current, client).await?;
        let hash = self.hash_new(new, hashing::Turn::Existing).await?;
        let key = token_key(token);
        self.store.transact(&[Tree::Users, Tree::Sessions], |txn| {
            // The password proven must still be the account's: another
            // change in between makes this one's proof stale.
            let mut stored: StoredUser = txn_get(txn, Tree::Users, user.id.as_bytes())?
                .filter(|s: &StoredUser| s.sessions == generation)
                .ok_or(Abort::User(IdentityError::BadCredentials))?;
            let mut session: Session = txn_get(txn, Tree::Sessions, &key)?
                .filter(|s: &Session| !s.revoked && s.generation == stored.sessions)
                .ok_or(Abort::User(IdentityError::Unauthenticated(
                    "the session has ended",
                )))?;
            stored.password = hash.clone();
            stored.sessions = stored.sessions.wrapping_add(1);
            session.generation = stored.sessions;
            txn_put(txn, Tree::Users, user.id.as_bytes(), &stored)?;
            txn_put(txn, Tree::Sessions, &key, &session)?;
            Ok::<_, Abort<IdentityError>>(())
        })?;
        self.evict(|_, u| u.id == user.id);
        self.store.durable().await?;
        self.tell_watches(&user.id, user_notice(&user.id));
        Ok(())
    }

    /// Drop the cached sessions `gone` picks, once their end is written: a
    /// check that read the store meanwhile caches nothing.
    fn evict(&self, gone: impl Fn(&Vec<u8>, &User) -> bool) {
        let mut cache = self.live_sessions.lock().unwrap_or_else(|p| p.into_inner());
        self.evictions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.retain(|k, (u, _)| !gone(k, u));
    }

    /// Watch for the end of `token`'s session (its live connections close
    /// at once on a logout here, or on another node through the relay;
    /// else at their next check).
    pub fn watch_session(&self, token: &str, user: &str) -> SessionWatch {
        let rx = self
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(user.to_string())
            .or_insert_with(|| tokio::sync::broadcast::channel(WATCH_BACKLOG).0)
            .subscribe();
        SessionWatch {
            rx,
            key: token_key(token),
            notice: user_notice(user),
            user: user.to_string(),
            watchers: self.watchers.clone(),
        }
    }

    /// Change the phrase the host's dialogs show `user`.
    pub async fn set_security_phrase(&self, user: &str, phrase: &str) -> Result<(), IdentityError> {
        let phrase = check_security_phrase(phrase)?;
        self.change_user(user, |stored| stored.security_phrase = phrase.clone())
            .await
    }

    /// Change `user`'s stored record with `change`, durably.
    async fn change_user(
        &self,
        user: &str,
        change: impl Fn(&mut StoredUser),
    ) -> Result<(), IdentityError> {
        self.store.transact(&[Tree::Users], |txn| {
            let mut stored: StoredUser = txn_get(txn, Tree::Users, user.as_bytes())?.ok_or(
                Abort::User(IdentityError::InvalidInput("no such user".into())),
            )?;
            change(&mut stored);
            txn_put(txn, Tree::Users, user.as_bytes(), &stored)?;
            Ok(())
        })?;
        self.store.durable().await?;
        Ok(())
    }

    /// The phrase the host's dialogs show `user` (never anyone else).
    pub fn security_phrase(&self, user: &str) -> Result<String, IdentityError> {
        let stored: Option<StoredUser> = self.store.get(Tree::Users, user.as_bytes())?;
        Ok(stored.map(|s| s.security_phrase).unwrap_or_default())
    }

    /// Set who may add `user` to groups. Groups they are in already stay.
    pub async fn set_group_adds(&self, user: &str, adds: GroupAdds) -> Result<(), IdentityError> {
        self.change_user(user, |stored| stored.group_adds = adds)
            .await
    }

    /// Who may add `user` to groups.
    pub fn group_adds(&self, user: &str) -> Result<GroupAdds, IdentityError> {
        let stored: Option<StoredUser> = self.store.get(Tree::Users, user.as_bytes())?;
        Ok(stored.map(|s| s.group_adds).unwrap_or_default())
    }

    pub fn user(&self, id: &str) -> Result<Option<User>, IdentityError> {
        Ok(self
            .store
            .get::<StoredUser>(Tree::Users, id.as_bytes())?
            .map(|s| s.user))
    }

    /// The user's pseudonymous id for `app`: what the `identity` capability returns.
    pub fn find_by_username(&self, username: &str) -> Result<Option<User>, IdentityError> {
        find_user(&self.store, username)
    }
}

/// Look a user up by username in `store`: for offline admin tools, which
/// have no running identity service.
pub fn find_user(store: &Store, username: &str) -> Result<Option<User>, IdentityError> {
    let Ok(name) = normalize_username(username) else {
        return Ok(None);
    };
    let Some(id) = store.get_raw(Tree::Usernames, name.as_bytes())? else {
        return Ok(None);
    };
    Ok(store.get::<StoredUser>(Tree::Users, &id)?.map(|s| s.user))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An identity service with `config` on a fresh in-memory store.
    fn in_memory(config: IdentityConfig) -> Arc<Identity> {
        let backend: Arc<dyn superapp_store::Backend> =
            Arc::new(superapp_store::MemoryBackend::new());
        Arc::new(Identity::new(Store::with_backend(backend).unwrap(), config))
    }

    /// An identity service whose password hashes are quick to make.
    fn fast_hashing() -> Arc<Identity> {
        in_memory(IdentityConfig {
            password_iterations: NonZeroU32::new(1_000).expect("non-zero"),
            ..Default::default()
        })
    }

    /// A storm of logins (anyone who knows a password can make one) does
    /// not keep a user from changing their password: the new password's
    /// hash takes its turn among the logins' checks, not after them all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_password_change_is_not_starved_by_a_storm_of_logins() {
        // One slot, and hashes slow enough that the logins always queue.
        let identity = in_memory(IdentityConfig {
            password_iterations: NonZeroU32::new(20_000).expect("non-zero"),
            hash_slots: std::num::NonZeroUsize::MIN,
            ..Default::default()
        });
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        for name in ["ann", "tom"] {
            identity
                .register(name, name, "a-password", None)
                .await
                .unwrap();
        }
        let ann = identity.login("ann", "a-password", client).await.unwrap();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let storm: Vec<_> = (0..8)
            .map(|_| {
                let (identity, done) = (identity.clone(), done.clone());
                tokio::spawn(async move {
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        match identity.login("tom", "a-password", client).await {
                            Ok(_) | Err(IdentityError::Busy) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        let changed = identity
            .change_password(
                &ann.user,
                &ann.token,
                "a-password",
                "another-password",
                client,
            )
            .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in storm {
            task.await.unwrap();
        }
        changed.unwrap();
        identity
            .login("ann", "another-password", client)
            .await
            .unwrap();
    }

    /// A logout reaches the watches of its own user only: another user's
    /// connections are not woken by it. A user's channel goes with their
    /// last watch.
    #[tokio::test]
    async fn a_username_that_reads_like_another_is_refused_and_earlier_ones_are_indexed() {
        let identity = fast_hashing();
        identity
            .register("bob", "Bob", "a-password", None)
            .await
            .unwrap();
        for twin in ["bob.", "bob_", "b.o.b"] {
            assert!(
                matches!(
                    identity.register(twin, "Not Bob", "a-password", None).await,
                    Err(IdentityError::UsernameLookAlike(ref o)) if o == "bob"
                ),
                "{twin}"
            );
        }
        identity
            .register("mary", "Mary", "a-password", None)
            .await
            .unwrap();
        assert!(matches!(
            identity
                .register("rnary", "Not Mary", "a-password", None)
                .await,
            Err(IdentityError::UsernameLookAlike(_))
        ));
        identity
            .register("bobby", "Bobby", "a-password", None)
            .await
            .unwrap();

        // A store whose usernames were never indexed (an earlier version)
        // gets them indexed once; the next look-alike is refused.
        for look in username_looks("bob") {
            identity
                .store
                .transact(&[Tree::Usernames], |t| {
                    t.delete(Tree::Usernames, &look)?;
                    Ok::<_, Abort<IdentityError>>(())
                })
                .unwrap();
        }
        identity
            .store
            .transact(&[Tree::Meta], |t| {
                t.delete(Tree::Meta, b"usernames-looks-indexed")?;
                Ok::<_, Abort<IdentityError>>(())
            })
            .unwrap();
        assert!(Identity::index_existing_usernames(&identity.store).unwrap() > 0);
        assert_eq!(
            Identity::index_existing_usernames(&identity.store).unwrap(),
            0
        );
        assert!(matches!(
            identity.register("bob.", "Not Bob", "a-password", None).await,
            Err(IdentityError::UsernameLookAlike(ref o)) if o == "bob"
        ));
    }

    #[tokio::test]
    async fn a_logout_wakes_only_its_own_users_watches() {
        let identity = fast_hashing();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let mut sessions = Vec::new();
        for name in ["kim", "lee"] {
            identity
                .register(name, name, "a-password", None)
                .await
                .unwrap();
            for _ in 0..2 {
                sessions.push(identity.login(name, "a-password", client).await.unwrap());
            }
        }
        let mut watches: Vec<SessionWatch> = sessions
            .iter()
            .map(|s| identity.watch_session(&s.token, &s.user.id))
            .collect();
        identity.logout(&sessions[0].token).await.unwrap();
        let queued: Vec<usize> = watches.iter().map(|w| w.rx.len()).collect();
        assert_eq!(queued, [1, 1, 0, 0], "kim's watches hear of it, lee's not");
        let noticed: Vec<bool> = watches.iter_mut().map(|w| w.noticed()).collect();
        assert_eq!(noticed, [true, false, false, false], "the session's own");
        let kim = sessions[0].user.id.clone();
        identity
            .change_password(
                &sessions[1].user,
                &sessions[1].token,
                "a-password",
                "new-password",
                client,
            )
            .await
            .unwrap();
        let noticed: Vec<bool> = watches.iter_mut().map(|w| w.noticed()).collect();
        assert_eq!(noticed, [true, true, false, false], "all of kim's");
        let users = |identity: &Identity| {
            let mut users: Vec<String> =
                identity.watchers.lock().unwrap().keys().cloned().collect();
            users.sort();
            users
        };
        watches.truncate(3);
        assert_eq!(users(&identity).len(), 2, "one of lee's watches is left");
        watches.truncate(1);
        assert_eq!(users(&identity), [kim]);
        watches.clear();
        assert!(users(&identity).is_empty(), "nothing kept for no watch");
    }

    /// A login whose password check began before a password change and
    /// ends after it proved the old password: it gets no session. A
    /// session begun before the change ends with it, the asking one stays.
    #[tokio::test]
    async fn a_password_change_ends_other_sessions_and_a_login_that_spanned_it() {
        let identity = fast_hashing();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        identity
            .register("kim", "Kim", "old-password", None)
            .await
            .unwrap();
        let here = identity.login("kim", "old-password", client).await.unwrap();
        let there = identity.login("kim", "old-password", client).await.unwrap();
        assert!(identity.authenticate(&there.token).is_ok(), "cached now");
        // The slow part of a login, done before the change...
        let (user, generation) = identity
            .check_password("kim", "old-password", client, None)
            .await
            .unwrap();
        identity
            .change_password(
                &here.user,
                &here.token,
                "old-password",
                "new-password",
                client,
            )
            .await
            .unwrap();
        // ...and its session, after.
        assert!(matches!(
            identity.begin_session(user, generation).await,
            Err(IdentityError::BadCredentials)
        ));
        assert!(identity.authenticate(&here.token).is_ok());
        assert!(matches!(
            identity.authenticate(&there.token),
            Err(IdentityError::Unauthenticated(_))
        ));
        // A change proven by a password that is no longer the account's.
        assert!(matches!(
            identity
                .change_password(
                    &here.user,
                    &here.token,
                    "old-password",
                    "third-password",
                    client
                )
                .await,
            Err(IdentityError::BadCredentials)
        ));
        identity.login("kim", "new-password", client).await.unwrap();
    }

    /// A password hashed at an earlier, lower cost is hashed again at
    /// today's when its user signs in, and still works after.
    #[tokio::test]
    async fn a_password_of_an_earlier_cost_is_hashed_again_at_sign_in() {
        let backend: Arc<dyn superapp_store::Backend> =
            Arc::new(superapp_store::MemoryBackend::new());
        let with_cost = |iterations: u32| {
            Identity::new(
                Store::with_backend(backend.clone()).unwrap(),
                IdentityConfig {
                    password_iterations: NonZeroU32::new(iterations).expect("non-zero"),
                    ..Default::default()
                },
            )
        };
        let cost = |identity: &Identity| {
            let id = identity
                .store
                .get_raw(Tree::Usernames, b"kim")
                .unwrap()
                .unwrap();
            let stored: StoredUser = identity.store.get(Tree::Users, &id).unwrap().unwrap();
            stored.password
        };
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let earlier = with_cost(1_000);
        earlier
            .register("kim", "Kim", "kim-password-long", None)
            .await
            .unwrap();
        let now = with_cost(3_000);
        let today = NonZeroU32::new(3_000).unwrap();
        assert!(cost(&now).cheaper_than(today));
        assert!(matches!(
            now.login("kim", "guess-guess", client).await,
            Err(IdentityError::BadCredentials)
        ));
        assert!(
            cost(&now).cheaper_than(today),
            "a wrong password changes nothing"
        );
        now.login("kim", "kim-password-long", client).await.unwrap();
        assert!(!cost(&now).cheaper_than(today));
        now.login("kim", "kim-password-long", client).await.unwrap();
    }

    /// Guesses at an account lock out the address they come from, and
    /// past the account-wide limit every address new to it; never its
    /// user where they signed in lately, nor their session's confirmations.
    #[tokio::test]
    async fn guesses_at_an_account_do_not_lock_its_user_out() {
        let identity = in_memory(IdentityConfig {
            password_iterations: NonZeroU32::new(1_000).expect("non-zero"),
            max_failures_per_user: 2,
            max_failures_per_account: 6,
            max_failures_per_client: 8,
            ..Default::default()
        });
        identity
            .register("kim", "Kim", "kim-password-long", None)
            .await
            .unwrap();
        let address = |i: u8| -> IpAddr { format!("198.51.100.{i}").parse().unwrap() };
        let (home, travel) = (address(200), address(201));
        let session = identity
            .login("kim", "kim-password-long", home)
            .await
            .unwrap();
        let throttled = |r: &Result<NewSession, IdentityError>| {
            matches!(r, Err(IdentityError::Throttled { .. }))
        };
        // Two wrong guesses from one address: it is refused, even the
        // right password; kim at home is not.
        for _ in 0..2 {
            let guess = identity.login("kim", "guess-guess", address(1)).await;
            assert!(
                matches!(guess, Err(IdentityError::BadCredentials)),
                "{guess:?}"
            );
        }
        assert!(throttled(
            &identity.login("kim", "kim-password-long", address(1)).await
        ));
        identity
            .login("kim", "kim-password-long", home)
            .await
            .unwrap();
        // Four more addresses, six guesses in all: every address new to
        // the account is refused now, the right password too.
        for i in 2..=3 {
            for _ in 0..2 {
                let _ = identity.login("kim", "guess-guess", address(i)).await;
            }
        }
        assert!(throttled(
            &identity.login("kim", "another-guess", address(9)).await
        ));
        assert!(throttled(
            &identity.login("kim", "kim-password-long", travel).await
        ));
        // Where kim signed in lately she still can, and her session
        // confirms a payment from anywhere, the guessing address too.
        identity
            .login("kim", "kim-password-long", home)
            .await
            .unwrap();
        for from in [travel, address(1)] {
            identity
                .confirm_password(&session.user, &session.token, "kim-password-long", from)
                .await
                .unwrap();
        }
        // A session guessing through payment sheets is held to its own
        // window, however it changes address.
        let stolen = identity
            .login("kim", "kim-password-long", home)
            .await
            .unwrap();
        for i in 0..2 {
            let guess = identity
                .confirm_password(&stolen.user, &stolen.token, "guess-guess", address(100 + i))
                .await;
            assert!(
                matches!(guess, Err(IdentityError::BadCredentials)),
                "{guess:?}"
            );
        }
        let next = identity
            .confirm_password(
                &stolen.user,
                &stolen.token,
                "kim-password-long",
                address(120),
            )
            .await;
        assert!(
            matches!(next, Err(IdentityError::Throttled { .. })),
            "{next:?}"
        );
        // Guesses at other accounts from kim's home network lock it out
        // for everyone but her.
        for i in 0..8 {
            let _ = identity
                .login(&format!("other{i}"), "guess-guess", home)
                .await;
        }
        assert!(matches!(
            identity.login("nobody", "guess-guess", home).await,
            Err(IdentityError::Throttled { .. })
        ));
        identity
            .login("kim", "kim-password-long", home)
            .await
            .unwrap();
        // Addresses are remembered for a while, then swept.
        let far = now_secs() + familiar::KEPT.as_secs() + 1;
        assert!(identity
            .familiar
            .contains("kim", &client_key(home), now_secs())
            .unwrap());
        assert_eq!(identity.familiar.sweep(far).unwrap(), 1);
        assert!(!identity
            .familiar
            .contains("kim", &client_key(home), now_secs())
            .unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_login_dropped_while_its_password_is_checked_gives_its_place_back() {
        let identity = in_memory(IdentityConfig {
            // A check long enough to be dropped in the middle of.
            password_iterations: NonZeroU32::new(200_000).expect("non-zero"),
            max_failures_per_user: 2,
            hash_slots: std::num::NonZeroUsize::new(4).unwrap(),
            ..Default::default()
        });
        identity
            .register("kim", "Kim", "kim-password-long", None)
            .await
            .unwrap();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        // Three logins whose clients go away mid-check: more than the
        // account's window holds.
        for _ in 0..3 {
            let identity = identity.clone();
            let login =
                tokio::spawn(
                    async move { identity.login("kim", "kim-password-long", client).await },
                );
            tokio::time::sleep(Duration::from_millis(100)).await;
            login.abort();
            assert!(login.await.unwrap_err().is_cancelled());
        }
        // Kim's own next login is not held back by them.
        identity
            .login("kim", "kim-password-long", client)
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sign_ups_count_made_accounts_taken_names_and_dropped_attempts_not_bad_input() {
        let identity = in_memory(IdentityConfig {
            // A hash long enough to be dropped in the middle of.
            password_iterations: NonZeroU32::new(200_000).expect("non-zero"),
            max_signups_per_client: 3,
            ..Default::default()
        });
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let sign_up = |name: &'static str, password: &'static str, client: IpAddr| {
            let identity = identity.clone();
            async move { identity.sign_up(name, "N", password, None, client).await }
        };
        // Bad input, however much of it, takes nothing from the window.
        for _ in 0..5 {
            let bad = sign_up("kim", "short", here).await;
            assert!(
                matches!(bad, Err(IdentityError::InvalidInput(_))),
                "{bad:?}"
            );
        }
        sign_up("kim", "kim-password-long", here).await.unwrap();
        let taken = sign_up("kim", "kim-password-long", here).await;
        assert!(
            matches!(taken, Err(IdentityError::UsernameTaken)),
            "{taken:?}"
        );
        // One whose client goes away mid-way counts: it may have made its
        // account by then.
        let dropped = tokio::spawn(sign_up("lee", "lee-password-long", here));
        tokio::time::sleep(Duration::from_millis(100)).await;
        dropped.abort();
        let _ = dropped.await;
        let over = sign_up("max", "max-password-long", here).await;
        assert!(
            matches!(over, Err(IdentityError::SignUpsThrottled { .. })),
            "{over:?}"
        );
        // The window is per address; IPv6 addresses of one /64 share one.
        sign_up("max", "max-password-long", "192.0.2.2".parse().unwrap())
            .await
            .unwrap();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        assert_eq!(
            client_key("::ffff:192.0.2.1".parse().unwrap()),
            client_key(here)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_hashes_run_no_more_at_once_than_their_slots() {
        let identity = in_memory(IdentityConfig {
            // Slow enough that hashes started together overlap.
            password_iterations: NonZeroU32::new(50_000).expect("non-zero"),
            hash_slots: std::num::NonZeroUsize::MIN,
            ..Default::default()
        });
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let storm: Vec<_> = (0..6)
            .map(|i| {
                let identity = identity.clone();
                tokio::spawn(async move {
                    let name = format!("user{i}");
                    identity
                        .register(&name, "U", "a-long-password", None)
                        .await?;
                    identity.login(&name, "a-long-password", client).await
                })
            })
            .collect();
        for one in storm {
            one.await.unwrap().unwrap();
        }
        assert_eq!(identity.hashing.peak(), 1, "twelve hashes, one at a time");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_guesses_on_two_nodes_never_get_past_the_limit() {
        let backend: Arc<dyn superapp_store::Backend> =
            Arc::new(superapp_store::MemoryBackend::new());
        let config = IdentityConfig {
            password_iterations: NonZeroU32::new(1000).expect("non-zero"),
            ..Default::default()
        };
        let nodes: Vec<Arc<Identity>> = (0..2)
            .map(|_| {
                let store = Store::with_backend(backend.clone()).unwrap();
                Arc::new(Identity::new(store, config.clone()))
            })
            .collect();
        nodes[0]
            .register("kim", "Kim", "kim-password-long", None)
            .await
            .unwrap();
        // Her own burst of right passwords goes through, though it is
        // wider than the window.
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let burst: Vec<_> = (0..12)
            .map(|i| {
                let node = nodes[i % 2].clone();
                tokio::spawn(async move { node.login("kim", "kim-password-long", client).await })
            })
            .collect();
        for login in burst {
            login.await.unwrap().unwrap();
        }
        // Thirty wrong guesses at once: five are tried, the rest refused.
        let guesses: Vec<_> = (0..30)
            .map(|i| {
                let node = nodes[i % 2].clone();
                tokio::spawn(async move { node.login("kim", &format!("guess-{i}"), client).await })
            })
            .collect();
        let mut wrong = 0;
        for guess in guesses {
            match guess.await.unwrap() {
                Err(IdentityError::BadCredentials) => wrong += 1,
                Err(IdentityError::Throttled { .. }) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(wrong, 5, "exactly the allowed failures were tried");
        let right = nodes[1].login("kim", "kim-password-long", client).await;
        assert!(
            matches!(right, Err(IdentityError::Throttled { .. })),
            "{right:?}"
        );
    }
}
