//! Direct and group conversations. Each message gets the next
//! per-conversation sequence number in the same store transaction that
//! writes it, so seqs are gapless and strictly increasing; a client message
//! id makes sends idempotent; members sync with "everything after seq N" and
//! get live pushes through the hub once the message is durable.

mod hub;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use hub::{Frame, Hub, Subscription};

use crate::identity::{new_id, now_secs, User};
use crate::store::{txn_get, txn_put, Abort, Store, StoreError, Tree};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Direct,
    Group,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub kind: Kind,
    pub title: Option<String>,
    /// User ids, in the order they joined.
    pub members: Vec<String>,
    pub created_by: String,
    pub created_at: u64,
    /// Seq of the newest message (0: none yet).
    pub last_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub conversation_id: String,
    pub seq: u64,
    pub sender: String,
    pub client_id: String,
    pub text: String,
    pub sent_at: u64,
}

/// A conversation as one member sees it in their list.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub last_message: Option<Message>,
    pub unread: u64,
    pub read_seq: u64,
}

#[derive(Debug, Clone)]
pub struct MessagingConfig {
    /// Longest message text, in bytes.
    pub max_message_bytes: usize,
    pub max_group_members: usize,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        MessagingConfig {
            max_message_bytes: 16 << 10,
            max_group_members: 256,
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
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Abort<MessagingError>> for MessagingError {
    fn from(a: Abort<MessagingError>) -> Self {
        match a {
            Abort::User(e) => e,
            Abort::Store(e) => MessagingError::Store(e),
        }
    }
}

fn message_key(conversation: &str, seq: u64) -> Vec<u8> {
    let mut key = conversation.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Join key parts with NUL, which ids and usernames never contain.
fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

/// Sends to one conversation are serialized by one of these locks (chosen
/// by hashing the id), which keeps store transactions from conflicting.
const LOCK_STRIPES: usize = 256;

pub struct Messaging {
    store: Arc<Store>,
    hub: Arc<Hub>,
    config: MessagingConfig,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

/// A frame the WebSocket sends for a new message.
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
            store,
            hub,
            config,
            stripes,
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
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
        let fresh = Conversation {
            id: new_id(),
            kind: Kind::Direct,
            title: None,
            members: vec![me.id.clone(), other.id.clone()],
            created_by: me.id.clone(),
            created_at: now_secs(),
            last_seq: 0,
        };
        let trees = [Tree::DirectPairs, Tree::Conversations, Tree::Memberships];
        let conversation = self.store.transact(&trees, |txn| {
            if let Some(id) = txn.get(Tree::DirectPairs, &pair)? {
                return txn_get::<Conversation>(txn, Tree::Conversations, &id)?.ok_or_else(|| {
                    Abort::Store(StoreError::Corrupt(
                        "direct pair without conversation".into(),
                    ))
                });
            }
            txn.put(Tree::DirectPairs, &pair, fresh.id.as_bytes())?;
            self.insert(txn, &fresh)?;
            Ok::<_, Abort<MessagingError>>(fresh.clone())
        })?;
        self.store.durable().await?;
        Ok(conversation)
    }

    pub async fn group(
        &self,
        me: &User,
        title: &str,
        others: &[User],
    ) -> Result<Conversation, MessagingError> {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > 100 || title.chars().any(char::is_control) {
            return Err(MessagingError::InvalidInput(
                "a group title is 1-100 characters".into(),
            ));
        }
        let mut members = vec![me.id.clone()];
        for u in others {
            if !members.contains(&u.id) {
                members.push(u.id.clone());
            }
        }
        if members.len() > self.config.max_group_members {
            return Err(MessagingError::InvalidInput(format!(
                "a group has at most {} members",
                self.config.max_group_members
            )));
        }
        let conversation = Conversation {
            id: new_id(),
            kind: Kind::Group,
            title: Some(title.to_string()),
            members,
            created_by: me.id.clone(),
            created_at: now_secs(),
            last_seq: 0,
        };
        self.store
            .transact(&[Tree::Conversations, Tree::Memberships], |txn| {
                Ok::<_, Abort<MessagingError>>(self.insert(txn, &conversation)?)
            })?;
        self.store.durable().await?;
        Ok(conversation)
    }

    fn insert(&self, txn: &dyn crate::store::Txn, c: &Conversation) -> Result<(), StoreError> {
        txn_put(txn, Tree::Conversations, c.id.as_bytes(), c)?;
        for member in &c.members {
            txn.put(Tree::Memberships, &key(&[member, &c.id]), b"")?;
        }
        Ok(())
    }

    /// The conversation, if `me` is a member.
    pub fn get(&self, me: &User, id: &str) -> Result<Conversation, MessagingError> {
        self.store
            .get::<Conversation>(Tree::Conversations, id.as_bytes())?
            .filter(|c| c.members.contains(&me.id))
            .ok_or(MessagingError::NotFound)
    }

    /// `me`'s conversations, newest activity first, with last message and
    /// unread count.
    pub fn list(&self, me: &User) -> Result<Vec<Summary>, MessagingError> {
        let prefix = key(&[&me.id, ""]);
        let mut out = Vec::new();
        for (k, _) in self
            .store
            .scan(Tree::Memberships, &prefix, None, usize::MAX, false)?
        {
            let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let Some(conversation) = self
                .store
                .get::<Conversation>(Tree::Conversations, id.as_bytes())?
            else {
                continue;
            };
            let last_message = match conversation.last_seq {
                0 => None,
                seq => self
                    .store
                    .get::<Message>(Tree::Messages, &message_key(&id, seq))?,
            };
            let read_seq = self.read_seq(&id, &me.id)?;
            out.push(Summary {
                unread: conversation.last_seq.saturating_sub(read_seq),
                read_seq,
                last_message,
                conversation,
            });
        }
        out.sort_by_key(|s| {
            std::cmp::Reverse(
                s.last_message
                    .as_ref()
                    .map_or(s.conversation.created_at, |m| m.sent_at),
            )
        });
        Ok(out)
    }

    fn read_seq(&self, conversation: &str, user: &str) -> Result<u64, MessagingError> {
        Ok(self
            .store
            .get::<u64>(Tree::ReadMarks, &key(&[conversation, user]))?
            .unwrap_or(0))
    }

    /// Append a message. Returns it and whether it is new: resending the
    /// same `client_id` returns the first message, never a duplicate.
    pub async fn send(
        &self,
        me: &User,
        id: &str,
        client_id: &str,
        text: &str,
    ) -> Result<(Message, bool), MessagingError> {
        if client_id.is_empty() || client_id.len() > 64 || client_id.contains('\0') {
            return Err(MessagingError::InvalidInput(
                "client_id is 1-64 bytes".into(),
            ));
        }
        if text.len() > self.config.max_message_bytes {
            return Err(MessagingError::TooLarge {
                size: text.len(),
                limit: self.config.max_message_bytes,
            });
        }
        if text.trim().is_empty() {
            return Err(MessagingError::InvalidInput(
                "a message needs some text".into(),
            ));
        }
        let dedup_key = key(&[id, &me.id, client_id]);
        let stripe = self.stripe(id).lock().await;
        let trees = [
            Tree::Conversations,
            Tree::ClientIds,
            Tree::Messages,
            Tree::ReadMarks,
        ];
        let outcome = self.store.transact(&trees, |txn| {
            let mut conversation =
                txn_get::<Conversation>(txn, Tree::Conversations, id.as_bytes())?
                    .filter(|c| c.members.contains(&me.id))
                    .ok_or(Abort::User(MessagingError::NotFound))?;
            if let Some(seq) = txn_get::<u64>(txn, Tree::ClientIds, &dedup_key)? {
                let existing = txn_get::<Message>(txn, Tree::Messages, &message_key(id, seq))?
                    .ok_or_else(|| {
                        Abort::Store(StoreError::Corrupt("client id without message".into()))
                    })?;
                return Ok((existing, false, conversation.members));
            }
            let seq = conversation.last_seq + 1;
            let message = Message {
                conversation_id: id.to_string(),
                seq,
                sender: me.id.clone(),
                client_id: client_id.to_string(),
                text: text.to_string(),
                sent_at: now_secs(),
            };
            txn_put(txn, Tree::Messages, &message_key(id, seq), &message)?;
            txn_put(txn, Tree::ClientIds, &dedup_key, &seq)?;
            // The sender has read their own message.
            txn_put(txn, Tree::ReadMarks, &key(&[id, &me.id]), &seq)?;
            conversation.last_seq = seq;
            txn_put(txn, Tree::Conversations, id.as_bytes(), &conversation)?;
            Ok((message, true, conversation.members))
        });
        let (message, created, members) = outcome?;
        // Register for the flush while still holding the conversation's
        // lock, so pushes go out in seq order; wait for it after releasing.
        let after: Option<Box<dyn FnOnce() + Send>> = if created {
            let hub = self.hub.clone();
            let frame: Frame = Arc::from(
                serde_json::to_string(&MessageFrame {
                    r#type: "message",
                    message: &message,
                })
                .expect("frames serialize"),
            );
            Some(Box::new(move || hub.publish(&members, &frame)))
        } else {
            None
        };
        let durable = self.store.commit_then(after);
        drop(stripe);
        durable.await?;
        Ok((message, created))
    }

    /// Messages with seq > `after`, oldest first, at most `limit`.
    pub fn sync(
        &self,
        me: &User,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Message>, MessagingError> {
        self.get(me, id)?;
        let prefix = key(&[id, ""]);
        let start = message_key(id, after);
        self.store
            .scan(Tree::Messages, &prefix, Some(&start), limit, false)?
            .into_iter()
            .map(|(_, v)| crate::store::decode(Tree::Messages, &v).map_err(MessagingError::from))
            .collect()
    }

    /// Record that `me` has read up to `seq` (never moves backwards).
    pub async fn mark_read(&self, me: &User, id: &str, seq: u64) -> Result<u64, MessagingError> {
        let conversation = self.get(me, id)?;
        let seq = seq.min(conversation.last_seq);
        let mark = key(&[id, &me.id]);
        let stored = self.store.transact(&[Tree::ReadMarks], |txn| {
            let current = txn_get::<u64>(txn, Tree::ReadMarks, &mark)?.unwrap_or(0);
            let next = current.max(seq);
            txn_put(txn, Tree::ReadMarks, &mark, &next)?;
            Ok::<_, Abort<MessagingError>>(next)
        })?;
        self.store.durable().await?;
        Ok(stored)
    }
}
