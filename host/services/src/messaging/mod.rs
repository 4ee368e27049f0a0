//! Direct and group conversations. Each message gets the next
//! per-conversation sequence number in the same store transaction that
//! writes it, so seqs are gapless and strictly increasing; a client message
//! id makes sends idempotent; members sync with "everything after seq N" and
//! get live pushes through the hub once the message is durable.

mod hub;
mod limit;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use hub::{Frame, Hub, Relay, Subscription};
pub use limit::SendRate;

use crate::identity::{new_id, now_secs, GroupAdds, User};
use superapp_store::{txn_get, txn_put, Abort, Store, StoreError, Tree, Txn};

/// A message stored (or found stored under its client id) whose flush is
/// still to come: [`Messaging::stage`]'s answer.
#[must_use = "a staged message is acknowledged only once settled"]
pub struct Staged {
    message: Message,
    /// Whether this send stored it (not a replay of an earlier one).
    created: bool,
    durable: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>>,
    /// Counts the message once durable (none for a replay).
    sent: Option<prometheus_client::metrics::counter::Counter>,
}

impl Staged {
    /// Whether this send stored the message (then it is announced, and the
    /// session it came through gets its turn to acknowledge it).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Wait until the message is durable: the message as stored, and
    /// whether this send stored it.
    pub async fn settle(self) -> Result<(Message, bool), MessagingError> {
        self.durable.await?;
        if let Some(sent) = &self.sent {
            sent.inc();
        }
        Ok((self.message, self.created))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Direct,
    Group,
    /// An app's service account writing to one user.
    Service,
}

/// The sender id of an app's service account.
pub fn service_account(app_id: &str) -> String {
    format!("app:{app_id}")
}

/// A conversation as stored. Its newest seq is not stored here: it is the
/// highest seq in the messages tree, so appending a message rewrites nothing
/// but the message itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    id: String,
    kind: Kind,
    title: Option<String>,
    /// User ids, in the order they joined.
    members: Vec<String>,
    created_by: String,
    created_at: u64,
    /// Raised by every change of the members: of two copies, the cache
    /// keeps the newer.
    #[serde(default)]
    version: u64,
    /// Who may remove others from a group, once its creator has left (the
    /// member longest in it then); `None` while the creator is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

/// A conversation as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Conversation {
    pub id: String,
    pub kind: Kind,
    pub title: Option<String>,
    /// User ids, in the order they joined.
    pub members: Vec<String>,
    pub created_by: String,
    /// For a group: who may remove others (its creator, or after the
    /// creator left, the member longest in it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub created_at: u64,
    /// Seq of the newest message (0: none yet).
    pub last_seq: u64,
}

impl Stored {
    /// Who may remove others from the group: its creator, until they left.
    fn owner(&self) -> &str {
        self.owner.as_deref().unwrap_or(&self.created_by)
    }

    fn with_last_seq(self, last_seq: u64) -> Conversation {
        let owner = (self.kind == Kind::Group).then(|| self.owner().to_string());
        Conversation {
            id: self.id,
            kind: self.kind,
            title: self.title,
            members: self.members,
            owner,
            created_by: self.created_by,
            created_at: self.created_at,
            last_seq,
        }
    }
}

/// An app card shared into a chat: opening it launches the app with `params`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub app_id: String,
    pub title: String,
    pub description: String,
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub conversation_id: String,
    pub seq: u64,
    pub sender: String,
    pub client_id: String,
    pub text: String,
    pub sent_at: u64,
    /// The same in milliseconds, which orders conversations active in one
    /// second; 0 in messages stored before it was kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sent_at_ms: u64,
    /// Set when the message is a shared app card (`text` is its title).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<Card>,
    /// Set when the host wrote the message about a change of the group's
    /// members (`sender` made it; `text` says it in words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
}

/// A change of a group's members, as its message records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Notice {
    /// The sender added `member`.
    Added { member: String },
    /// The sender, the group's owner, removed `member`.
    Removed { member: String },
    /// The sender left; `owner` is who may remove others from then on,
    /// when it was the sender.
    Left {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
}

/// How a notice names a user: their display name and their username,
/// which no one else can take.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Now as a message records it: seconds, and the same to the millisecond
/// (one reading of the host's clock, so the two agree).
fn sent_now() -> (u64, u64) {
    let now = superapp_core::ids::now();
    (now.as_secs(), now.as_millis() as u64)
}

fn named(user: &User) -> String {
    format!("{} (@{})", user.display_name, user.username)
}

/// A conversation as one member sees it in their list.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub last_message: Option<Message>,
    pub unread: u64,
    pub read_seq: u64,
    /// For a direct conversation, the other member as the API shows users
    /// (the API fills it in; the list reads no accounts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with: Option<User>,
}

/// One page of a user's conversation list.
#[derive(Debug)]
pub struct ListPage {
    pub conversations: Vec<Summary>,
    /// Where the next page starts, when there is one.
    pub next_before: Option<Cursor>,
}

/// A place in a conversation list, written `activity-id`: the activity
/// (milliseconds) of the last conversation of a page, and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub activity: u64,
    pub id: String,
}

impl Cursor {
    /// Where the list puts it: newest activity first, ties by id.
    fn key(&self) -> (std::cmp::Reverse<u64>, &str) {
        (std::cmp::Reverse(self.activity), &self.id)
    }

    /// Whether `self` is listed after `other`.
    fn comes_after(&self, other: &Cursor) -> bool {
        self.key() > other.key()
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.activity, self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = MessagingError;

    fn from_str(s: &str) -> Result<Cursor, MessagingError> {
        s.split_once('-')
            .and_then(|(activity, id)| {
                let activity = activity.parse().ok()?;
                (!id.is_empty()).then(|| Cursor {
                    activity,
                    id: id.to_string(),
                })
            })
            .ok_or_else(|| {
                MessagingError::InvalidInput(
                    "`before` is a cursor from a page's Link header (rel=\"next\")".into(),
                )
            })
    }
}

/// Most conversations in one page of the list.
pub const MAX_LIST_PAGE: usize = 500;

/// The longest `client_id` a send may carry, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 64;

#[derive(Debug, Clone)]
pub struct MessagingConfig {
    /// Longest message text, in bytes.
    pub max_message_bytes: usize,
    pub max_group_members: usize,
    /// How fast one user may send (apps' notifications have their own
    /// limit, in the notify capability).
    pub send_rate: SendRate,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        MessagingConfig {
            max_message_bytes: 16 << 10,
            max_group_members: 256,
            send_rate: SendRate::per_second(std::num::NonZeroU32::new(10).expect("10 is not 0")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("the message is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    /// Also returned to non-members, so they cannot probe which ids exist.
    #[error("no such conversation")]
    NotFound,
    #[error("no user named `{0}`")]
    UnknownUser(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("no such member of this group")]
    NotAMember,
    /// A retry must repeat its message: the same client id with other text
    /// is another message, which a new client id sends.
    #[error("this client_id was already used for another message in this conversation")]
    ClientIdReused,
    #[error("too many messages: a user may send {per_second} a second (after a pause, {burst} at once); the next may go in {} ms", retry_after.as_millis().max(1))]
    Throttled {
        per_second: u32,
        burst: u32,
        retry_after: std::time::Duration,
    },
    #[error("too many new groups: a user may create {} at once and {} in any hour; the next may be created in {} s", limit::GROUPS_AT_ONCE, limit::GROUPS_PER_HOUR, retry_after.as_secs().max(1))]
    GroupsThrottled { retry_after: std::time::Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

superapp_store::abort_into!(MessagingError);

/// Whether `retry` says what `earlier`, sent under the same client id, said.
fn same_message(earlier: &Message, retry: &Message) -> bool {
    earlier.text == retry.text && earlier.card == retry.card
}

/// The messages tree holds two kinds of entries, so that a message and its
/// client-id entry are written in one atomic single-tree batch:
/// `m\0conversation\0seq` → message and `c\0conversation\0sender\0client id` → seq.
fn messages_prefix(conversation: &str) -> Vec<u8> {
    key(&["m", conversation, ""])
}

fn message_key(conversation: &str, seq: u64) -> Vec<u8> {
    let mut key = messages_prefix(conversation);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn client_key(conversation: &str, sender: &str, client_id: &str) -> Vec<u8> {
    key(&["c", conversation, sender, client_id])
}

/// The seq of the first of `entries` (message keys under `prefix`); 0 for none.
fn seq_of(prefix: &[u8], entries: &[(Vec<u8>, Vec<u8>)]) -> u64 {
    entries
        .first()
        .and_then(|(k, _)| k.get(prefix.len()..))
        .and_then(|seq| <[u8; 8]>::try_from(seq).ok())
        .map_or(0, u64::from_be_bytes)
}

/// Whether `sender` may append to `c`: members of direct and group
/// conversations; for a service conversation, only the app's service
/// account (users read it, they do not write into it).
fn may_append(c: &Stored, sender: &str) -> bool {
    match c.kind {
        Kind::Service => c.created_by == sender,
        Kind::Direct | Kind::Group => c.members.iter().any(|m| m == sender),
    }
}

/// Whether `sender` may write into `c`: a member of an app's channel, who
/// reads it, is told that only the app writes there; anyone else, that
/// there is no such conversation.
fn check_append(c: Option<&Stored>, sender: &str) -> Result<(), MessagingError> {
    match c {
        Some(c) if may_append(c, sender) => Ok(()),
        Some(c) if c.members.iter().any(|m| m == sender) => Err(MessagingError::Forbidden(
            "only its app writes in an app's channel".into(),
        )),
        _ => Err(MessagingError::NotFound),
    }
}

/// Join key parts with NUL, which ids and usernames never contain.
fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

fn insert(txn: &dyn Txn, c: &Stored) -> Result<(), StoreError> {
    txn_put(txn, Tree::Conversations, c.id.as_bytes(), c)?;
    for member in &c.members {
        txn.put(Tree::Memberships, &key(&[member, &c.id]), b"")?;
    }
    Ok(())
}

/// What a change of a group's members did.
enum Changed {
    /// Nothing (the member was added before).
    Nothing,
    /// Changed them, recorded by this message, told to these members.
    Members(Box<(Message, Stored)>),
    /// Its last member left: the group is deleted.
    Emptied,
}

/// Sends to one conversation are serialized by one of these locks (chosen
/// by hashing the id), which keeps store transactions from conflicting.
const LOCK_STRIPES: usize = 256;

/// Conversations kept decoded in memory, and their members in all; past
/// either the cache starts over. Members bound its memory (each is an id of
/// a few dozen bytes) whatever the groups' sizes: about 40 MiB at most.
const CACHED_CONVERSATIONS: usize = 100_000;
const CACHED_MEMBERS: usize = 500_000;

/// Stored conversations by id, and how many members they hold in all.
struct ConversationCache {
    by_id: std::collections::HashMap<String, Arc<Stored>>,
    members: usize,
    max_conversations: usize,
    max_members: usize,
}

impl Default for ConversationCache {
    fn default() -> Self {
        ConversationCache::with_limits(CACHED_CONVERSATIONS, CACHED_MEMBERS)
    }
}

impl ConversationCache {
    fn with_limits(max_conversations: usize, max_members: usize) -> Self {
        ConversationCache {
            by_id: Default::default(),
            members: 0,
            max_conversations,
            max_members,
        }
    }

    /// Keep `stored` (in place of an earlier copy), starting over first if
    /// it would pass either limit.
    fn insert(&mut self, stored: Arc<Stored>) {
        if self
            .by_id
            .get(&stored.id)
            .is_some_and(|c| c.version > stored.version)
        {
            // Read before a change of its members that is cached already.
            return;
        }
        let replaced = self.by_id.get(&stored.id).map(|c| c.members.len());
        let conversations = self.by_id.len() + usize::from(replaced.is_none());
        let members = self.members - replaced.unwrap_or(0) + stored.members.len();
        if conversations > self.max_conversations || members > self.max_members {
            self.by_id.clear();
            self.members = stored.members.len();
        } else {
            self.members = members;
        }
        self.by_id.insert(stored.id.clone(), stored);
    }
}

pub struct Messaging {
    store: Arc<Store>,
    hub: Arc<Hub>,
    config: MessagingConfig,
    stripes: Vec<tokio::sync::Mutex<()>>,
    sends: limit::SendLimit,
    groups: limit::GroupLimit,
    /// Newest seq per conversation, read from the store on first use and
    /// kept current by `send` under the conversation's lock stripe.
    last_seqs: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// On a store of its own, the first seq of each conversation not yet
    /// known to be on disk: a message is written before the group commit
    /// that makes it durable, and until then readers do not see it (nor
    /// count it), so none reads a message a failed flush then loses and
    /// whose seq the next start gives to another.
    staged: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    /// Stored conversations by id, decoded once, so a send checks
    /// membership without reading the store. Only a group's members change
    /// (`add_member`, `remove_member`, which replace its entry here under
    /// the conversation's lock stripe); on a shared store another process
    /// may change them, so a group is read from the store there.
    conversations: std::sync::Mutex<ConversationCache>,
    /// Messages stored (users' and apps'), for `/metrics`.
    sent: prometheus_client::metrics::counter::Counter,
    /// Sends refused by the per-user send limit, for `/metrics`.
    throttled: prometheus_client::metrics::counter::Counter,
}

/// A frame the WebSocket sends for a new message.
/// What a message is, for the send limit: a user's own text (counted), or
/// what the host posts for a user or an app (a card the user confirmed in a
/// dialog, an app's service message), which is not.
enum Post {
    Text,
    Hosted(Option<Card>),
}

#[derive(Serialize)]
struct MessageFrame<'a> {
    r#type: &'static str,
    message: &'a Message,
}

impl Messaging {
    pub fn new(store: Arc<Store>, hub: Arc<Hub>, config: MessagingConfig) -> Messaging {
        let stripes = (0..LOCK_STRIPES)
            .map(|_| tokio::sync::Mutex::new(()))
            .collect();
        Messaging {
            sends: limit::SendLimit::new(config.send_rate, &store),
            groups: limit::GroupLimit::new(&store),
            store,
            hub,
            config,
            stripes,
            last_seqs: Default::default(),
            staged: Default::default(),
            conversations: Default::default(),
            sent: Default::default(),
            throttled: Default::default(),
        }
    }

    /// Messages stored since start (a shared handle: register it once).
    pub fn sent(&self) -> prometheus_client::metrics::counter::Counter {
        self.sent.clone()
    }

    /// Sends refused by the send limit since start (a shared handle).
    pub fn throttled(&self) -> prometheus_client::metrics::counter::Counter {
        self.throttled.clone()
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Take one send from `user`'s allowance. A retry under a client id
    /// counts too: a throttled client waits and sends again, and the retry
    /// is answered with what was stored.
    fn admit(&self, user: &str) -> Result<(), MessagingError> {
        self.sends
            .take(user)?
            .map_err(|retry_after| self.refused_send(retry_after))
    }

    /// A send refused by the send limit, counted.
    fn refused_send(&self, retry_after: std::time::Duration) -> MessagingError {
        self.throttled.inc();
        let rate = self.sends.rate();
        MessagingError::Throttled {
            per_second: rate.per_second.get(),
            burst: rate.burst.get(),
            retry_after,
        }
    }

    /// Forget the send limit's users whose allowance is full again (call
    /// now and then); how many are still tracked.
    pub fn sweep_send_limits(&self) -> usize {
        self.sends.sweep() + self.groups.sweep()
    }

    fn stripe(&self, conversation: &str) -> &tokio::sync::Mutex<()> {
        let h = conversation
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.stripes[h % LOCK_STRIPES]
    }

    /// The direct conversation between `me` and `other`, created on first use.
    pub async fn direct(&self, me: &User, other: &User) -> Result<Conversation, MessagingError> {
        if me.id == other.id {
            return Err(MessagingError::InvalidInput(
                "a direct conversation needs another user".into(),
            ));
        }
        let (a, b) = if me.id < other.id {
            (&me.id, &other.id)
        } else {
            (&other.id, &me.id)
        };
        let pair = key(&[a, b]);
        let fresh = Stored {
            id: new_id(),
            kind: Kind::Direct,
            title: None,
            members: vec![me.id.clone(), other.id.clone()],
            created_by: me.id.clone(),
            created_at: now_secs(),
            version: 0,
            owner: None,
        };
        let stored = self.open_pair(&pair, fresh)?;
        self.store.durable().await?;
        let last_seq = self.visible_seq(&stored.id)?;
        Ok(stored.with_last_seq(last_seq))
    }

    /// A new group of `me` and `others`, each with their setting of who
    /// may add them ([`GroupAdds`]): refused whole if one of them does not
    /// accept `me`. A refused group still counts against `me`'s sends and
    /// groups, so asking is no free way to learn who accepts whom.
    pub async fn group(
        &self,
        me: &User,
        title: &str,
        others: &[(User, GroupAdds)],
    ) -> Result<Conversation, MessagingError> {
        let title = title.trim();
        if let Some(problem) = superapp_core::text::label_problem(title, 100) {
            return Err(MessagingError::InvalidInput(format!(
                "a group title is 1-100 characters, some visible: it {problem}"
            )));
        }
        let mut members = vec![me.id.clone()];
        for (u, _) in others {
            if !members.contains(&u.id) {
                members.push(u.id.clone());
            }
        }
        if members.len() < 2 {
            return Err(MessagingError::InvalidInput(
                "a group needs at least one member besides you".into(),
            ));
        }
        if members.len() > self.config.max_group_members {
            return Err(MessagingError::InvalidInput(format!(
                "a group has at most {} members",
                self.config.max_group_members
            )));
        }
        // A new group counts as a send, and against the groups a user may
        // create.
        self.admit(&me.id)?;
        self.groups.take(&me.id)?.map_err(|retry_after| {
            self.throttled.inc();
            MessagingError::GroupsThrottled { retry_after }
        })?;
        for (user, adds) in others {
            self.may_add(me, user, *adds)?;
        }
        let stored = Stored {
            id: new_id(),
            kind: Kind::Group,
            title: Some(title.to_string()),
            members,
            created_by: me.id.clone(),
            created_at: now_secs(),
            version: 0,
            owner: None,
        };
        self.store
            .transact(&[Tree::Conversations, Tree::Memberships], |txn| {
                Ok::<_, Abort<MessagingError>>(insert(txn, &stored)?)
            })?;
        self.store.durable().await?;
        Ok(stored.with_last_seq(0))
    }

    /// Whether `me` may add `user` to a group, by `user`'s setting `adds`:
    /// [`GroupAdds::Contacts`] lets in only people `user` has written to in
    /// their direct conversation (opening one is not enough: anyone can).
    /// Adding oneself is always allowed. The refusal says the same whatever
    /// the setting, so that it tells nobody more than that they may not.
    fn may_add(&self, me: &User, user: &User, adds: GroupAdds) -> Result<(), MessagingError> {
        if me.id == user.id {
            return Ok(());
        }
        let allowed = match adds {
            GroupAdds::Everyone => true,
            GroupAdds::Nobody => false,
            GroupAdds::Contacts => self.has_written_to(&user.id, &me.id)?,
        };
        if allowed {
            return Ok(());
        }
        Err(MessagingError::Forbidden(format!(
            "{} does not accept being added to groups by you",
            named(user)
        )))
    }

    /// Whether `writer` has sent a message in their direct conversation
    /// with `other`: every message is indexed by its sender's client id.
    fn has_written_to(&self, writer: &str, other: &str) -> Result<bool, MessagingError> {
        let pair = if writer < other {
            key(&[writer, other])
        } else {
            key(&[other, writer])
        };
        let Some(id) = self.store.get_raw(Tree::DirectPairs, &pair)? else {
            return Ok(false);
        };
        let id = String::from_utf8_lossy(&id);
        let mut sent = key(&["c", &id, writer]);
        sent.push(0);
        Ok(!self
            .store
            .scan(Tree::Messages, &sent, None, 1, false)?
            .is_empty())
    }

    /// The stored conversation `id`, from memory when it was read before.
    /// On a store of its own, a copy is read and kept under the cache's
    /// lock, so no change of its members (kept under that lock once
    /// written) falls between them, and an older copy never replaces it.
    fn conversation(&self, id: &str) -> Result<Option<Arc<Stored>>, MessagingError> {
        let cache = || self.conversations.lock().unwrap_or_else(|p| p.into_inner());
        let shared = self.store.shared();
        let held = cache();
        if let Some(c) = held.by_id.get(id) {
            if c.kind != Kind::Group || !shared {
                return Ok(Some(c.clone()));
            }
        }
        let mut held = (!shared).then_some(held);
        let Some(stored) = self
            .store
            .get::<Stored>(Tree::Conversations, id.as_bytes())?
        else {
            return Ok(None);
        };
        let stored = Arc::new(stored);
        match held.as_mut() {
            Some(held) => held.insert(stored.clone()),
            None => cache().insert(stored.clone()),
        }
        Ok(Some(stored))
    }

    /// The stored conversation, if `me` is a member.
    fn stored(&self, me: &User, id: &str) -> Result<Stored, MessagingError> {
        self.conversation(id)?
            .filter(|c| c.members.contains(&me.id))
            .map(|c| Stored::clone(&c))
            .ok_or(MessagingError::NotFound)
    }

    /// The stored conversation, if `sender` may append to it: members of
    /// direct and group conversations; for a service conversation, only the
    /// app's service account (users read it, they do not write into it).
    fn stored_for(&self, sender: &str, id: &str) -> Result<Arc<Stored>, MessagingError> {
        let c = self.conversation(id)?;
        check_append(c.as_deref(), sender)?;
        c.ok_or(MessagingError::NotFound)
    }

    /// Add `user` to the group `id`, at the request of `me`, a member, if
    /// `user`'s setting `adds` accepts `me` ([`GroupAdds`]). Adding a member
    /// again changes nothing. The group as it is now.
    pub async fn add_member(
        &self,
        me: &User,
        id: &str,
        user: &User,
        adds: GroupAdds,
    ) -> Result<Conversation, MessagingError> {
        let max = self.config.max_group_members;
        // Read before the transaction; held against the members it reads,
        // so somebody who left meanwhile is not added back unasked.
        let refusal = match self.may_add(me, user, adds) {
            Ok(()) => None,
            Err(MessagingError::Forbidden(why)) => Some(why),
            Err(e) => return Err(e),
        };
        let stored = self
            .change_members(me, id, |c| {
                if c.members.contains(&user.id) {
                    return Ok(None);
                }
                if let Some(why) = &refusal {
                    return Err(MessagingError::Forbidden(why.clone()));
                }
                if c.members.len() >= max {
                    return Err(MessagingError::InvalidInput(format!(
                        "a group has at most {max} members"
                    )));
                }
                c.members.push(user.id.clone());
                let notice = Notice::Added {
                    member: user.id.clone(),
                };
                Ok(Some((
                    notice,
                    format!("{} added {}", named(me), named(user)),
                )))
            })
            .await?;
        Ok(stored.with_last_seq(self.visible_seq(id)?))
    }

    /// Take `user` out of the group `id`: the group's owner (its creator,
    /// and once the creator has left, the member longest in it) may remove
    /// anyone, every member themselves (leaving). From then on the group is
    /// gone from their list, and they neither read nor get its messages.
    pub async fn remove_member(
        &self,
        me: &User,
        id: &str,
        user: &User,
    ) -> Result<(), MessagingError> {
        self.change_members(me, id, |c| {
            let owner = c.owner().to_string();
            if user.id != me.id && owner != me.id {
                return Err(MessagingError::Forbidden(
                    "only the group's owner (its creator, or after the creator left the member longest in it) may remove others; anyone may leave".into(),
                ));
            }
            let before = c.members.len();
            c.members.retain(|m| *m != user.id);
            if c.members.len() == before {
                return Err(MessagingError::NotAMember);
            }
            if user.id != me.id {
                let notice = Notice::Removed {
                    member: user.id.clone(),
                };
                return Ok(Some((notice, format!("{} removed {}", named(me), named(user)))));
            }
            let mut next = None;
            if user.id == owner {
                // The owner left: the member longest in the group is next.
                next = c.members.first().cloned();
                c.owner = Some(next.clone().unwrap_or_default());
            }
            let notice = Notice::Left { owner: next };
            Ok(Some((notice, format!("{} left", named(me)))))
        })
        .await?;
        Ok(())
    }

    /// Change the members of group `id`, of which `me` is one, with
    /// `change`, under the conversation's lock stripe (so a send sees the
    /// members before or after, and pushes only to those). A change that
    /// changes something (`change` names it with a notice and its words)
    /// is written in one transaction with the membership index and a
    /// message from `me` that records it; the message is pushed, once
    /// durable, to the members before and after the change, so whoever was
    /// removed hears it too. Durable before it returns.
    async fn change_members(
        &self,
        me: &User,
        id: &str,
        change: impl Fn(&mut Stored) -> Result<Option<(Notice, String)>, MessagingError>,
    ) -> Result<Stored, MessagingError> {
        // Its notice is a message from `me`: it counts as a send, so adding
        // and removing someone in a loop floods nobody.
        self.admit(&me.id)?;
        let stripe = self.stripe(id).lock().await;
        // On a store of its own the next seq is known under the stripe; on a
        // shared one, the transaction reads it.
        let next_seq = match self.store.shared() {
            true => None,
            // Read, not cached: `id` may be no conversation of `me`'s (the
            // transaction checks), and nothing is kept for one.
            false => Some(self.peek_last_seq(id)? + 1),
        };
        let prefix = messages_prefix(id);
        let trees = [
            Tree::Conversations,
            Tree::Memberships,
            Tree::Messages,
            Tree::ReadMarks,
            Tree::Meta,
        ];
        let (stored, changed) = self.store.transact(&trees, |txn| {
            let mut c: Stored = txn_get(txn, Tree::Conversations, id.as_bytes())?
                .filter(|c: &Stored| c.members.contains(&me.id))
                .ok_or(Abort::User(MessagingError::NotFound))?;
            if c.kind != Kind::Group {
                return Err(Abort::User(MessagingError::InvalidInput(
                    "only a group's members change".into(),
                )));
            }
            let before = c.clone();
            let Some((notice, text)) = change(&mut c).map_err(Abort::User)? else {
                return Ok((c, Changed::Nothing));
            };
            c.version += 1;
            for gone in before.members.iter().filter(|m| !c.members.contains(m)) {
                txn.delete(Tree::Memberships, &key(&[gone, id]))?;
            }
            if c.members.is_empty() {
                // The last member left: the group is gone, its messages next
                // (listed to be deleted, so a crash meanwhile does not keep them).
                txn.delete(Tree::Conversations, id.as_bytes())?;
                txn.put(Tree::Meta, &purge_key(id), b"")?;
                return Ok((c, Changed::Emptied));
            }
            for new in c.members.iter().filter(|m| !before.members.contains(m)) {
                txn.put(Tree::Memberships, &key(&[new, id]), b"")?;
            }
            txn_put(txn, Tree::Conversations, id.as_bytes(), &c)?;
            let seq = match next_seq {
                Some(seq) => seq,
                None => seq_of(&prefix, &txn.scan(Tree::Messages, &prefix, None, 1, true)?) + 1,
            };
            let (sent_at, sent_at_ms) = sent_now();
            let message = Message {
                conversation_id: id.to_string(),
                seq,
                sender: me.id.clone(),
                client_id: new_id(),
                text,
                sent_at,
                sent_at_ms,
                card: None,
                notice: Some(notice),
            };
            txn_put(txn, Tree::Messages, &message_key(id, seq), &message)?;
            txn_put(txn, Tree::ReadMarks, &key(&[id, &me.id]), &seq)?;
            // Told to everyone in the group before or after.
            let joined: Vec<String> = c
                .members
                .iter()
                .filter(|m| !before.members.contains(m))
                .cloned()
                .collect();
            let mut told = before;
            told.members.extend(joined);
            Ok::<_, Abort<MessagingError>>((c, Changed::Members(Box::new((message, told)))))
        })?;
        let (message, told) = match changed {
            Changed::Nothing => return Ok(stored),
            Changed::Emptied => {
                self.forget(&stored);
                self.store.durable().await?;
                drop(stripe);
                return Ok(stored);
            }
            Changed::Members(change) => *change,
        };
        if next_seq.is_some() {
            self.not_yet_durable(id, message.seq);
            self.last_seqs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_string(), message.seq);
        }
        self.conversations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Arc::new(stored.clone()));
        let Staged { durable, .. } = self.announce(stripe, Arc::new(told), message, None);
        durable.await?;
        Ok(stored)
    }

    /// Forget the group `emptied`, whose last member left: its copy in
    /// memory becomes the empty one (newer than any copy a reader may still
    /// bring back from before, so nobody is let in by one), and its
    /// messages, their client-id entries and its read marks are deleted
    /// from the store in the background, a page at a time: nobody can reach
    /// them any more. After a crash meanwhile, the next start goes on
    /// ([`Messaging::resume_purges`]).
    fn forget(&self, emptied: &Stored) {
        let id = emptied.id.as_str();
        self.conversations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Arc::new(emptied.clone()));
        self.last_seqs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let store = self.store.clone();
        let id = id.to_string();
        in_background(move || purge(&store, &id));
    }

    /// Finish deleting what groups emptied before a crash still hold (each
    /// is listed until its deletion ends). The number of groups.
    pub fn resume_purges(&self) -> Result<usize, MessagingError> {
        let pending = self
            .store
            .scan(Tree::Meta, PURGE, None, usize::MAX, false)?;
        for (k, _) in &pending {
            let id = String::from_utf8_lossy(&k[PURGE.len()..]).into_owned();
            let store = self.store.clone();
            in_background(move || purge(&store, &id));
        }
        Ok(pending.len())
    }
}

/// Where an emptied group waits for its messages to be deleted:
/// `purge\0` ‖ conversation id in the meta tree, written in the transaction
/// that empties it.
const PURGE: &[u8] = b"purge\0";

fn purge_key(id: &str) -> Vec<u8> {
    [PURGE, id.as_bytes()].concat()
}

/// Run `work` off the async executor: on its blocking pool when there is
/// one, else on a thread of its own.
fn in_background(work: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(work);
        }
        Err(_) => {
            std::thread::spawn(work);
        }
    }
}

/// Delete emptied group `id`'s messages, their client-id entries and its
/// read marks, a page at a time, then its place in the purge list.
fn purge(store: &Store, id: &str) {
    let prefixes = [
        (Tree::Messages, messages_prefix(id)),
        (Tree::Messages, key(&["c", id, ""])),
        (Tree::ReadMarks, key(&[id, ""])),
    ];
    let deleted = || -> Result<(), StoreError> {
        for (tree, prefix) in &prefixes {
            loop {
                let page = store.scan(*tree, prefix, None, 512, false)?;
                if page.is_empty() {
                    break;
                }
                for (k, _) in page {
                    store.remove(*tree, &k)?;
                }
            }
        }
        store.remove(Tree::Meta, &purge_key(id))
    };
    if let Err(e) = deleted() {
        tracing::warn!(error = %e, conversation = id, "deleting an emptied group's messages; the next start goes on");
    }
}

impl Messaging {
    /// The highest seq in a conversation (0: no messages).
    fn last_seq(&self, id: &str) -> Result<u64, MessagingError> {
        if self.store.shared() {
            // Another host process may have appended: only the store knows.
            return self.stored_last_seq(id);
        }
        if let Some(seq) = self
            .last_seqs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(*seq);
        }
        let seq = self.stored_last_seq(id)?;
        // A concurrent send may have stored a newer seq meanwhile; keep the larger.
        let mut cache = self.last_seqs.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cache.entry(id.to_string()).or_insert(seq);
        *entry = (*entry).max(seq);
        Ok(*entry)
    }

    /// The highest seq readers see: [`Messaging::last_seq`] but for
    /// messages not yet on disk.
    fn visible_seq(&self, id: &str) -> Result<u64, MessagingError> {
        let last = self.last_seq(id)?;
        Ok(self
            .durable_below(id)
            .map_or(last, |first| last.min(first - 1)))
    }

    /// The first seq of `id` not yet known to be on disk, if any.
    fn durable_below(&self, id: &str) -> Option<u64> {
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    /// Note that message `seq` of `id` is written but not yet on disk.
    fn not_yet_durable(&self, id: &str, seq: u64) {
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_insert(seq);
    }

    /// [`Messaging::last_seq`] on a store of its own, without keeping
    /// what it read.
    fn peek_last_seq(&self, id: &str) -> Result<u64, MessagingError> {
        let cached = self
            .last_seqs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied();
        match cached {
            Some(seq) => Ok(seq),
            None => self.stored_last_seq(id),
        }
    }

    /// The highest seq in the store: the last key of the conversation's messages.
    fn stored_last_seq(&self, id: &str) -> Result<u64, MessagingError> {
        let prefix = messages_prefix(id);
        let last = self.store.scan(Tree::Messages, &prefix, None, 1, true)?;
        Ok(seq_of(&prefix, &last))
    }

    /// The conversation, if `me` is a member.
    pub fn get(&self, me: &User, id: &str) -> Result<Conversation, MessagingError> {
        let stored = self.stored(me, id)?;
        Ok(stored.with_last_seq(self.visible_seq(id)?))
    }

    /// A page of `me`'s conversations, newest activity first (a
    /// conversation's activity: its last message, or its creation while it
    /// has none, to the millisecond where the message says, else the second;
    /// ties by id, in the order of the store), each
    /// with its last message and unread count; `before` is the cursor of
    /// the previous page's last one.
    ///
    /// Ordering needs every conversation's activity, one read each (the
    /// seq is cached); only the page's are read in full.
    pub fn list(
        &self,
        me: &User,
        before: Option<&Cursor>,
        limit: usize,
    ) -> Result<ListPage, MessagingError> {
        let prefix = key(&[&me.id, ""]);
        let mut order: Vec<Cursor> = Vec::new();
        for (k, _) in self
            .store
            .scan(Tree::Memberships, &prefix, None, usize::MAX, false)?
        {
            let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let last = match self.visible_seq(&id)? {
                0 => None,
                seq => self
                    .store
                    .get::<Message>(Tree::Messages, &message_key(&id, seq))?,
            };
            let activity = match last {
                Some(m) if m.sent_at_ms > 0 => m.sent_at_ms,
                Some(m) => m.sent_at * 1000,
                None => match self.conversation(&id)? {
                    Some(stored) => stored.created_at * 1000,
                    None => continue,
                },
            };
            let cursor = Cursor { activity, id };
            if before.is_none_or(|b| cursor.comes_after(b)) {
                order.push(cursor);
            }
        }
        order.sort_unstable_by(|a, b| a.key().cmp(&b.key()));
        let more = order.len() > limit;
        order.truncate(limit);
        let mut conversations = Vec::with_capacity(order.len());
        for Cursor { id, .. } in &order {
            let Some(stored) = self.conversation(id)? else {
                continue;
            };
            let stored = Stored::clone(&stored);
            let last_seq = self.visible_seq(id)?;
            let last_message = match last_seq {
                0 => None,
                seq => self
                    .store
                    .get::<Message>(Tree::Messages, &message_key(id, seq))?,
            };
            let read_seq = self.read_seq(id, &me.id)?;
            conversations.push(Summary {
                unread: last_seq.saturating_sub(read_seq),
                read_seq,
                last_message,
                with: None,
                conversation: stored.with_last_seq(last_seq),
            });
        }
        Ok(ListPage {
            conversations,
            next_before: if more { order.pop() } else { None },
        })
    }

    fn read_seq(&self, conversation: &str, user: &str) -> Result<u64, MessagingError> {
        Ok(self
            .store
            .get::<u64>(Tree::ReadMarks, &key(&[conversation, user]))?
            .unwrap_or(0))
    }

    /// Append a message. Returns it and whether it is new: resending the
    /// same `client_id` returns the first message, never a duplicate.
    ///
    /// Appends to one conversation are serialized by its lock stripe (on a
    /// shared store, by a transaction), and the next seq is the highest
    /// stored one plus one. A crash can lose only writes
    /// that were never flushed, and so never acknowledged: their seqs are
    /// reused, and the seq sequence stays gapless.
    pub async fn send(
        &self,
        me: &User,
        id: &str,
        client_id: &str,
        text: &str,
    ) -> Result<(Message, bool), MessagingError> {
        self.stage(me, id, client_id, text, None)
            .await?
            .settle()
            .await
    }

    /// The first half of [`Messaging::send`]: check and write the message
    /// (or find the one sent before under `client_id`) and register for
    /// the flush that makes it durable, without waiting for that flush. A
    /// caller that stages several messages one after another has them
    /// stored in that order and may wait for them together; each is
    /// acknowledged by [`Staged::settle`], never before it is durable.
    /// `origin`, the hub session the send came through, is not pushed the
    /// message: its acknowledgement carries it.
    pub async fn stage(
        &self,
        me: &User,
        id: &str,
        client_id: &str,
        text: &str,
        origin: Option<u64>,
    ) -> Result<Staged, MessagingError> {
        // Malformed sends are refused as such, before they count.
        self.check_message(client_id, text)?;
        // On a shared store this process's count comes first, then the send
        // is counted over every node in the transaction that stores it
        // (`append_shared`).
        if self.store.shared() {
            self.sends
                .take_here(&me.id)
                .map_err(|retry_after| self.refused_send(retry_after))?;
        } else {
            self.admit(&me.id)?;
        }
        self.append(&me.id, id, client_id, text, Post::Text, origin)
            .await
    }

    /// Post an app card into one of `me`'s conversations, as `me`. Not
    /// counted against the send limit: each share is a dialog the user
    /// answered.
    pub async fn share_card(
        &self,
        me: &User,
        id: &str,
        card: Card,
    ) -> Result<Message, MessagingError> {
        let title = card.title.clone();
        Ok(self
            .append(
                &me.id,
                id,
                &new_id(),
                &title,
                Post::Hosted(Some(card)),
                None,
            )
            .await?
            .settle()
            .await?
            .0)
    }

    /// The conversation registered under `pair` (a direct pair of users, or
    /// a (user, app) service pair), or `fresh`, created now.
    fn open_pair(&self, pair: &[u8], fresh: Stored) -> Result<Stored, MessagingError> {
        let trees = [Tree::DirectPairs, Tree::Conversations, Tree::Memberships];
        Ok(self.store.transact(&trees, |txn| {
            if let Some(id) = txn.get(Tree::DirectPairs, pair)? {
                return txn_get::<Stored>(txn, Tree::Conversations, &id)?.ok_or_else(|| {
                    Abort::Store(StoreError::Corrupt(
                        "conversation pair without conversation".into(),
                    ))
                });
            }
            txn.put(Tree::DirectPairs, pair, fresh.id.as_bytes())?;
            insert(txn, &fresh)?;
            Ok::<_, Abort<MessagingError>>(fresh.clone())
        })?)
    }

    /// A message from an app's service account into the user's chat list:
    /// the (user, app) service conversation is created on first use.
    pub async fn notify(
        &self,
        user: &str,
        app_id: &str,
        app_name: &str,
        text: &str,
        card: Option<Card>,
    ) -> Result<Message, MessagingError> {
        let pair = key(&["app", app_id, user]);
        let fresh = Stored {
            id: new_id(),
            kind: Kind::Service,
            title: Some(app_name.to_string()),
            members: vec![user.to_string()],
            created_by: service_account(app_id),
            created_at: now_secs(),
            version: 0,
            owner: None,
        };
        let conversation = self.open_pair(&pair, fresh)?.id;
        let (message, _) = self
            .append(
                &service_account(app_id),
                &conversation,
                &new_id(),
                text,
                Post::Hosted(card),
                None,
            )
            .await?
            .settle()
            .await?;
        Ok(message)
    }

    fn check_message(&self, client_id: &str, text: &str) -> Result<(), MessagingError> {
        if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_BYTES || client_id.contains('\0')
        {
            return Err(MessagingError::InvalidInput(format!(
                "client_id is 1-{MAX_CLIENT_ID_BYTES} bytes, without NUL"
            )));
        }
        if text.len() > self.config.max_message_bytes {
            return Err(MessagingError::TooLarge {
                size: text.len(),
                limit: self.config.max_message_bytes,
            });
        }
        if superapp_core::text::visible_chars(text) == 0 {
            return Err(MessagingError::InvalidInput(
                "a message needs some text that shows".into(),
            ));
        }
        if superapp_core::text::stray_tags(text) {
            return Err(MessagingError::InvalidInput(
                "a message may not contain tag characters (U+E0000–U+E007F) but in the flags of England, Scotland and Wales: they draw as nothing".into(),
            ));
        }
        if superapp_core::text::stacks_marks(text) {
            return Err(MessagingError::InvalidInput(
                "a message may not stack more than 4 marks on one character: they draw over the lines around it".into(),
            ));
        }
        if let Some(c) = text
            .chars()
            .find(|&c| superapp_core::text::disallowed_in_message(c))
        {
            return Err(MessagingError::InvalidInput(format!(
                "a message may not contain {}: control characters other than line breaks and tabs, and the direction overrides U+202D and U+202E (which show text in another order than it was written), are refused",
                c.escape_unicode()
            )));
        }
        Ok(())
    }

    async fn append(
        &self,
        sender: &str,
        id: &str,
        client_id: &str,
        text: &str,
        post: Post,
        origin: Option<u64>,
    ) -> Result<Staged, MessagingError> {
        let (card, counted) = match post {
            Post::Text => (None, true),
            Post::Hosted(card) => (card, false),
        };
        self.check_message(client_id, text)?;
        let dedup = client_key(id, sender, client_id);
        let stripe = self.stripe(id).lock().await;
        let conversation = self.stored_for(sender, id)?;
        let (sent_at, sent_at_ms) = sent_now();
        let draft = Message {
            conversation_id: id.to_string(),
            seq: 0,
            sender: sender.to_string(),
            client_id: client_id.to_string(),
            text: text.to_string(),
            sent_at,
            sent_at_ms,
            card,
            notice: None,
        };
        if self.store.shared() {
            let (message, fresh, conversation) = self.append_shared(draft, &dedup, counted)?;
            if !fresh {
                drop(stripe);
                return Ok(self.replayed(message));
            }
            return Ok(self.announce(stripe, Arc::new(conversation), message, origin));
        }
        if let Some(existing) = self.sent_before(id, sender, client_id, &dedup)? {
            drop(stripe);
            if !same_message(&existing, &draft) {
                return Err(MessagingError::ClientIdReused);
            }
            return Ok(self.replayed(existing));
        }
        let seq = self.last_seq(id)? + 1;
        let message = Message { seq, ..draft };
        self.not_yet_durable(id, seq);
        // Index first, then the message: recovery keeps a prefix of the
        // writes, so a message never survives without its index entry (which
        // would let a retry store it twice). An index entry that survives
        // without its message is ignored by `sent_before`.
        self.store.put(Tree::Messages, &dedup, &seq)?;
        self.store
            .put(Tree::Messages, &message_key(id, seq), &message)?;
        self.last_seqs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), seq);
        // The sender has read their own message.
        self.store.put(Tree::ReadMarks, &key(&[id, sender]), &seq)?;
        Ok(self.announce(stripe, conversation, message, origin))
    }

    /// A message sent before under the same client id: the first send may
    /// not be flushed yet, so it is answered once it is.
    fn replayed(&self, message: Message) -> Staged {
        Staged {
            message,
            created: false,
            durable: Box::pin(self.store.durable()),
            sent: None,
        }
    }

    /// Append `draft` on a store other host processes share, in one
    /// transaction: the sender's send limit (if `counted`), the client-id
    /// check, the next seq (the highest stored plus one), the message, its
    /// index entry and the sender's read mark.
    /// Two processes appending at once both read the highest seq and both
    /// write after it, so the database lets one commit and the other try
    /// again: seqs stay gapless and unique whichever node assigns them.
    /// The message as stored, and whether this call stored it.
    fn append_shared(
        &self,
        draft: Message,
        dedup: &[u8],
        counted: bool,
    ) -> Result<(Message, bool, Stored), MessagingError> {
        let id = draft.conversation_id.as_str();
        let prefix = messages_prefix(id);
        let window = self.sends.window().filter(|_| counted);
        Ok(self.store.transact(
            &[
                Tree::Conversations,
                Tree::Messages,
                Tree::ReadMarks,
                Tree::Windows,
            ],
            |txn| {
                // Who may write, read in the transaction that writes: a
                // member removed through another node meanwhile may not,
                // and the push goes to the members as they are.
                let conversation: Option<Stored> =
                    txn_get(txn, Tree::Conversations, id.as_bytes())?;
                check_append(conversation.as_ref(), &draft.sender).map_err(Abort::User)?;
                let conversation = conversation.ok_or(Abort::User(MessagingError::NotFound))?;
                // The send limit, over every node: a refused send stores
                // nothing and is not counted.
                if let Some(window) = window {
                    if let Err(retry_after) = window.take_in(txn, &draft.sender)? {
                        return Err(Abort::User(self.refused_send(retry_after)));
                    }
                }
                if let Some(seq) = txn_get::<u64>(txn, Tree::Messages, dedup)? {
                    let earlier = txn_get::<Message>(txn, Tree::Messages, &message_key(id, seq))?
                        .filter(|m| m.sender == draft.sender && m.client_id == draft.client_id);
                    if let Some(earlier) = earlier {
                        if !same_message(&earlier, &draft) {
                            return Err(Abort::User(MessagingError::ClientIdReused));
                        }
                        return Ok((earlier, false, conversation));
                    }
                }
                let last = txn.scan(Tree::Messages, &prefix, None, 1, true)?;
                let seq = seq_of(&prefix, &last) + 1;
                let message = Message {
                    seq,
                    ..draft.clone()
                };
                txn_put(txn, Tree::Messages, dedup, &seq)?;
                txn_put(txn, Tree::Messages, &message_key(id, seq), &message)?;
                txn_put(txn, Tree::ReadMarks, &key(&[id, &draft.sender]), &seq)?;
                Ok::<_, Abort<MessagingError>>((message, true, conversation))
            },
        )?)
    }

    /// A stored message's push to `members`, registered for the flush
    /// while `stripe` (the conversation's lock) is still held, so pushes go
    /// out in seq order; the answer waits for the flush after releasing it.
    fn announce(
        &self,
        stripe: tokio::sync::MutexGuard<'_, ()>,
        conversation: Arc<Stored>,
        message: Message,
        origin: Option<u64>,
    ) -> Staged {
        let hub = self.hub.clone();
        let frame: Frame = Arc::from(
            serde_json::to_string(&MessageFrame {
                r#type: "message",
                message: &message,
            })
            .expect("frames serialize"),
        );
        let (staged, seq) = (self.staged.clone(), message.seq);
        let durable = self.store.commit_then(Some(Box::new(move || {
            // On disk: readers see it from now on.
            let mut staged = staged.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(first) = staged.get_mut(&conversation.id) {
                *first = (*first).max(seq + 1);
            }
            drop(staged);
            hub.publish_from(&conversation.members, &frame, origin)
        })));
        drop(stripe);
        Staged {
            message,
            created: true,
            durable: Box::pin(durable),
            sent: Some(self.sent.clone()),
        }
    }

    /// The message `sender` already stored under `client_id`, if any. The
    /// index entry is only a hint: it counts when the message at that seq
    /// really is this sender's message with this client id.
    fn sent_before(
        &self,
        id: &str,
        sender: &str,
        client_id: &str,
        dedup: &[u8],
    ) -> Result<Option<Message>, MessagingError> {
        let Some(seq) = self.store.get::<u64>(Tree::Messages, dedup)? else {
            return Ok(None);
        };
        Ok(self
            .store
            .get::<Message>(Tree::Messages, &message_key(id, seq))?
            .filter(|m| m.sender == sender && m.client_id == client_id))
    }

    /// Messages with seq > `after`, oldest first, at most `limit`.
    pub fn sync(
        &self,
        me: &User,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Message>, MessagingError> {
        self.stored(me, id)?;
        let prefix = messages_prefix(id);
        let start = message_key(id, after);
        // Only what is on disk (see `staged`).
        let below = self.durable_below(id).unwrap_or(u64::MAX);
        self.store
            .scan(Tree::Messages, &prefix, Some(&start), limit, false)?
            .into_iter()
            .map(|(_, v)| {
                superapp_store::decode::<Message>(Tree::Messages, &v).map_err(MessagingError::from)
            })
            .filter(|m| !matches!(m, Ok(m) if m.seq >= below))
            .collect()
    }

    /// Record that `me` has read up to `seq` (never moves backwards).
    pub async fn mark_read(&self, me: &User, id: &str, seq: u64) -> Result<u64, MessagingError> {
        let conversation = self.get(me, id)?;
        let seq = seq.min(conversation.last_seq);
        let mark = key(&[id, &me.id]);
        let trees = [Tree::Conversations, Tree::ReadMarks];
        let stored = self.store.transact(&trees, |txn| {
            // Still a member as the mark is written: none is left behind
            // in a group its last member just left (and deleted).
            txn_get::<Stored>(txn, Tree::Conversations, id.as_bytes())?
                .filter(|c| c.members.contains(&me.id))
                .ok_or(Abort::User(MessagingError::NotFound))?;
            let current = txn_get::<u64>(txn, Tree::ReadMarks, &mark)?.unwrap_or(0);
            let next = current.max(seq);
            txn_put(txn, Tree::ReadMarks, &mark, &next)?;
            Ok::<_, Abort<MessagingError>>(next)
        })?;
        self.store.durable().await?;
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            username: id.into(),
            display_name: id.into(),
            created_at: 0,
        }
    }

    /// Messaging over a fresh store in a temporary folder (kept alive by
    /// the returned guard).
    fn messaging() -> (tempfile::TempDir, Arc<Store>, Messaging) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let messaging = Messaging::new(
            store.clone(),
            Arc::new(Hub::new(8)),
            MessagingConfig::default(),
        );
        (dir, store, messaging)
    }

    /// A message written but never made durable (its flush failed, as on
    /// a full disk) is never read: a restart would lose it and give its
    /// seq to another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_whose_flush_failed_is_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let (store, faults) = superapp_store::faults::FailingWrites::open(dir.path()).unwrap();
        let messaging = Messaging::new(store, Arc::new(Hub::new(8)), MessagingConfig::default());
        let (ann, ben) = (user("ann"), user("ben"));
        let chat = messaging.direct(&ann, &ben).await.unwrap().id;
        messaging.send(&ann, &chat, "c1", "on disk").await.unwrap();
        faults.fail_flushes();
        assert!(messaging.send(&ann, &chat, "c2", "lost").await.is_err());
        for reader in [&ann, &ben] {
            let seen = messaging.sync(reader, &chat, 0, 100).unwrap();
            let texts: Vec<&str> = seen.iter().map(|m| m.text.as_str()).collect();
            assert_eq!(texts, ["on disk"]);
            assert_eq!(messaging.get(reader, &chat).unwrap().last_seq, 1);
            let page = messaging.list(reader, None, 10).unwrap();
            let listed = &page.conversations[0];
            assert_eq!(
                listed.last_message.as_ref().map(|m| m.text.as_str()),
                Some("on disk")
            );
        }
        assert_eq!(
            messaging.list(&ben, None, 10).unwrap().conversations[0].unread,
            1
        );
    }

    /// A copy read before a change of the members, cached after it, does
    /// not replace the changed one.
    #[test]
    fn the_conversation_cache_keeps_the_newer_copy_of_a_group() {
        let copy = |version: u64, members: &[&str]| {
            Arc::new(Stored {
                id: "g".into(),
                kind: Kind::Group,
                title: None,
                members: members.iter().map(|m| m.to_string()).collect(),
                created_by: "a".into(),
                created_at: 0,
                version,
                owner: None,
            })
        };
        let mut cache = ConversationCache::default();
        cache.insert(copy(1, &["a"]));
        cache.insert(copy(0, &["a", "b"]));
        assert_eq!(
            cache.by_id["g"].members,
            ["a"],
            "b left; the stale copy lost"
        );
        assert_eq!(cache.members, 1);
        cache.insert(copy(2, &["a", "c"]));
        assert_eq!(cache.by_id["g"].members, ["a", "c"]);
    }

    #[test]
    fn the_conversation_cache_stays_within_its_members() {
        let conversation = |id: &str, members: usize| {
            Arc::new(Stored {
                id: id.into(),
                kind: Kind::Group,
                title: None,
                members: (0..members).map(|m| format!("user-{m}")).collect(),
                created_by: "user-0".into(),
                created_at: 0,
                version: 0,
                owner: None,
            })
        };
        let mut cache = ConversationCache::with_limits(3, 10);
        for (i, size) in [4, 4, 1, 6, 2, 2, 2, 9].into_iter().enumerate() {
            cache.insert(conversation(&format!("c{i}"), size));
            assert!(cache.members <= 10 && cache.by_id.len() <= 3);
            assert_eq!(
                cache.members,
                cache.by_id.values().map(|c| c.members.len()).sum::<usize>()
            );
            assert!(
                cache.by_id.contains_key(&format!("c{i}")),
                "the newest is kept"
            );
        }
        // Reading one again replaces it without counting it twice.
        cache.insert(conversation("c8", 1));
        cache.insert(conversation("c7", 9));
        assert_eq!((cache.by_id.len(), cache.members), (2, 10));
    }

    /// When the last member leaves, the group and everything said in it
    /// leave the store (more than a page of it), and the one who left
    /// last is not let back in by the copy in memory.
    #[tokio::test]
    async fn a_group_whose_last_member_left_is_deleted_with_its_messages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = MessagingConfig {
            send_rate: SendRate::per_second(std::num::NonZeroU32::new(100_000).unwrap()),
            ..MessagingConfig::default()
        };
        let messaging = Messaging::new(store.clone(), Arc::new(Hub::new(8)), config);
        let (alice, bob) = (user("alice"), user("bob"));
        let id = messaging
            .group(&alice, "trip", &[(bob.clone(), GroupAdds::Everyone)])
            .await
            .unwrap()
            .id;
        for i in 0..600 {
            let who = if i % 2 == 0 { &alice } else { &bob };
            messaging
                .send(who, &id, &format!("m{i}"), "hi")
                .await
                .unwrap();
        }
        messaging.mark_read(&bob, &id, 600).await.unwrap();
        messaging.remove_member(&alice, &id, &alice).await.unwrap();
        assert_eq!(
            messaging.sync(&bob, &id, 600, 10).unwrap().len(),
            1,
            "told bob"
        );
        messaging.remove_member(&bob, &id, &bob).await.unwrap();

        let sent = messaging.send(&bob, &id, "b-again", "back?").await;
        assert!(matches!(sent, Err(MessagingError::NotFound)), "{sent:?}");
        let read = messaging.mark_read(&bob, &id, 1).await;
        assert!(matches!(read, Err(MessagingError::NotFound)), "{read:?}");
        // Changes asked of groups that are none keep nothing in memory.
        let kept = messaging.last_seqs.lock().unwrap().len();
        for i in 0..50 {
            let gone = messaging
                .remove_member(&bob, &format!("no-group-{i}"), &bob)
                .await;
            assert!(matches!(gone, Err(MessagingError::NotFound)), "{gone:?}");
        }
        assert_eq!(messaging.last_seqs.lock().unwrap().len(), kept);
        assert!(matches!(
            messaging.sync(&bob, &id, 0, 10),
            Err(MessagingError::NotFound)
        ));
        assert!(store
            .get::<Stored>(Tree::Conversations, id.as_bytes())
            .unwrap()
            .is_none());
        let left = || {
            [
                (Tree::Messages, messages_prefix(&id)),
                (Tree::Messages, key(&["c", &id, ""])),
                (Tree::ReadMarks, key(&[&id, ""])),
                (Tree::Memberships, key(&[&alice.id, &id])),
                (Tree::Memberships, key(&[&bob.id, &id])),
            ]
            .iter()
            .map(|(tree, prefix)| {
                store
                    .scan(*tree, prefix, None, usize::MAX, false)
                    .unwrap()
                    .len()
            })
            .sum::<usize>()
        };
        for _ in 0..500 {
            if left() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(left(), 0, "nothing of the group is left");
        let listed = || {
            store
                .scan(Tree::Meta, PURGE, None, 10, false)
                .unwrap()
                .len()
        };
        for _ in 0..500 {
            if listed() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(listed(), 0, "done, so no longer listed");

        // What a crash left of a group being deleted goes at the next start.
        store.put_raw(Tree::Meta, &purge_key(&id), b"").unwrap();
        let message = Message {
            conversation_id: id.clone(),
            seq: 1,
            sender: alice.id.clone(),
            client_id: "left".into(),
            text: "left over".into(),
            sent_at: 0,
            sent_at_ms: 0,
            card: None,
            notice: None,
        };
        store
            .put(Tree::Messages, &message_key(&id, 1), &message)
            .unwrap();
        store
            .put(Tree::ReadMarks, &key(&[&id, &bob.id]), &1u64)
            .unwrap();
        assert_eq!(messaging.resume_purges().unwrap(), 1);
        for _ in 0..500 {
            if left() == 0 && listed() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!((left(), listed()), (0, 0));
    }

    #[tokio::test]
    async fn a_conversation_read_from_memory_still_refuses_outsiders() {
        let (_dir, _store, messaging) = messaging();
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let direct = messaging.direct(&alice, &bob).await.unwrap();
        let group = messaging
            .group(&alice, "trip", &[(bob.clone(), GroupAdds::Everyone)])
            .await
            .unwrap();
        let service = messaging
            .notify(&alice.id, "org.example.app", "App", "welcome", None)
            .await
            .unwrap();
        for id in [&direct.id, &group.id] {
            // The members' sends and reads put the conversation in memory.
            messaging.send(&alice, id, "a1", "hi").await.unwrap();
            messaging.sync(&bob, id, 0, 10).unwrap();
            let sent = messaging.send(&carol, id, "c1", "let me in").await;
            assert!(matches!(sent, Err(MessagingError::NotFound)), "{sent:?}");
            let read = messaging.sync(&carol, id, 0, 10);
            assert!(matches!(read, Err(MessagingError::NotFound)), "{read:?}");
        }
        // A service conversation is the app's to write into, not the user's
        // (who is told so), and nobody else's (who learns nothing of it).
        let id = &service.conversation_id;
        messaging.sync(&alice, id, 0, 10).unwrap();
        let sent = messaging.send(&alice, id, "a2", "reply").await;
        assert!(
            matches!(sent, Err(MessagingError::Forbidden(_))),
            "{sent:?}"
        );
        let sent = messaging.send(&carol, id, "c2", "reply").await;
        assert!(matches!(sent, Err(MessagingError::NotFound)), "{sent:?}");
        // What the store holds is what memory answers.
        let stored = messaging.get(&bob, &group.id).unwrap();
        assert_eq!(stored.members, group.members);
        assert_eq!(stored.last_seq, 1);
    }

    #[tokio::test]
    async fn an_index_entry_without_its_message_is_ignored() {
        let (_dir, store, messaging) = messaging();
        let (alice, bob) = (user("alice"), user("bob"));
        let c = messaging.direct(&alice, &bob).await.unwrap();
        // What a crash between the two writes of a send can leave behind.
        store
            .put(Tree::Messages, &client_key(&c.id, &alice.id, "lost"), &1u64)
            .unwrap();
        // Another message takes seq 1; the stale hint must not match it.
        let (first, created) = messaging.send(&bob, &c.id, "b1", "hello").await.unwrap();
        assert!(created);
        assert_eq!(first.seq, 1);
        let (retried, created) = messaging
            .send(&alice, &c.id, "lost", "retry")
            .await
            .unwrap();
        assert!(
            created,
            "the retry is stored, not answered with bob's message"
        );
        assert_eq!((retried.seq, retried.text.as_str()), (2, "retry"));
        let (again, created) = messaging
            .send(&alice, &c.id, "lost", "retry")
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again, retried);
    }

    /// Two host processes on one shared store (two `Store`s on one memory
    /// engine, which takes the paths PostgreSQL takes) append to one
    /// conversation at once: seqs stay gapless and unique, and a retried
    /// send on the other node is answered with the first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_on_a_shared_store_assign_gapless_seqs() {
        let engine = Arc::new(superapp_store::MemoryBackend::new());
        let node = || {
            Arc::new(Messaging::new(
                Store::with_backend(engine.clone()).unwrap(),
                Arc::new(Hub::new(8)),
                MessagingConfig::default(),
            ))
        };
        let (a, b) = (node(), node());
        let (alice, bob) = (user("alice"), user("bob"));
        let c = a.direct(&alice, &bob).await.unwrap();
        assert_eq!(b.direct(&bob, &alice).await.unwrap().id, c.id);
        let mut sends = Vec::new();
        for i in 0..40 {
            let (node, me, c) = (
                if i % 2 == 0 { a.clone() } else { b.clone() },
                if i % 3 == 0 {
                    alice.clone()
                } else {
                    bob.clone()
                },
                c.id.clone(),
            );
            sends.push(tokio::spawn(async move {
                node.send(&me, &c, &format!("m{i}"), "hi").await.unwrap()
            }));
        }
        let mut seqs = Vec::new();
        for s in sends {
            let (message, created) = s.await.unwrap();
            assert!(created);
            seqs.push(message.seq);
        }
        seqs.sort();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
        let (again, created) = b.send(&alice, &c.id, "m0", "hi").await.unwrap();
        assert!(!created, "the retry on the other node is the first send");
        assert_eq!(again.client_id, "m0");
        assert!(matches!(
            b.send(&alice, &c.id, "m0", "changed").await,
            Err(MessagingError::ClientIdReused)
        ));
        assert_eq!(a.get(&bob, &c.id).unwrap().last_seq, 40);
        assert_eq!(b.sync(&alice, &c.id, 0, 100).unwrap().len(), 40);
    }

    /// The send limit holds over two nodes of a shared store: sends spread
    /// over both get one burst between them, a refused send stores nothing,
    /// and another user's allowance is their own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_send_limit_holds_over_nodes_on_a_shared_store() {
        let engine = Arc::new(superapp_store::MemoryBackend::new());
        let config = MessagingConfig {
            send_rate: limit::SendRate::per_second(std::num::NonZeroU32::new(2).unwrap()),
            ..MessagingConfig::default()
        };
        let node = || {
            Messaging::new(
                Store::with_backend(engine.clone()).unwrap(),
                Arc::new(Hub::new(8)),
                config.clone(),
            )
        };
        let (a, b) = (node(), node());
        let (alice, bob) = (user("alice"), user("bob"));
        let c = a.direct(&alice, &bob).await.unwrap().id;
        let mut refused = 0;
        for i in 0..14 {
            let node = if i % 2 == 0 { &a } else { &b };
            match node.send(&alice, &c, &format!("m{i}"), "hi").await {
                Ok((m, created)) => assert!(created && m.seq <= 10, "{m:?}"),
                Err(MessagingError::Throttled { retry_after, .. }) => {
                    assert!(retry_after <= std::time::Duration::from_millis(500));
                    refused += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        // A burst of ten (five seconds' worth), perhaps one more refilled.
        assert!((3..=4).contains(&refused), "{refused} refused");
        let stored = b.sync(&bob, &c, 0, 100).unwrap().len();
        assert_eq!(stored, 14 - refused);
        b.send(&bob, &c, "b0", "mine").await.unwrap();
    }

    /// On a shared store, a send this node alone already counts as too
    /// many is refused before it reaches the database: a flood of refused
    /// sends costs the shared engine no read, write or transaction.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_past_the_node_count_never_reaches_the_shared_store() {
        let engine =
            superapp_store::faults::Counted::new(Arc::new(superapp_store::MemoryBackend::new()));
        let config = MessagingConfig {
            send_rate: limit::SendRate::per_second(std::num::NonZeroU32::new(2).unwrap()),
            ..MessagingConfig::default()
        };
        let node = Messaging::new(
            Store::with_backend(engine.clone()).unwrap(),
            Arc::new(Hub::new(8)),
            config,
        );
        let (alice, bob) = (user("alice"), user("bob"));
        let c = node.direct(&alice, &bob).await.unwrap().id;
        let mut i = 0;
        // Spend the burst (ten), and whatever refilled meanwhile.
        while node.send(&alice, &c, &format!("m{i}"), "hi").await.is_ok() {
            i += 1;
            assert!(i <= 12, "the limit never refused");
        }
        let before = engine.calls();
        for j in 0..200 {
            let refused = node.send(&alice, &c, &format!("flood{j}"), "hi").await;
            assert!(
                matches!(refused, Err(MessagingError::Throttled { .. })),
                "{refused:?}"
            );
        }
        assert_eq!(engine.calls(), before, "refused sends reached the engine");
        // Accepted sends do reach it (the count above could move).
        node.send(&bob, &c, "b0", "mine").await.unwrap();
        assert!(engine.calls().transactions > before.transactions);
    }
}
