//! Checks a mini-program's view and turns it into the tree the shell draws.
//!
//! The guest sends a flat node list (WIT has no recursive types). Here it
//! becomes a nested tree only if it is well formed: every child index points
//! forward, every node but the root has exactly one parent, and node count,
//! depth, string lengths and total text stay within the app's limits.
//! Images must be inline `data:` URLs or host assets, never network URLs.

use serde::Serialize;

use crate::bindings::superapp::plugin::types as wit;
use superapp_core::Limits;

/// Deepest nesting the shell will draw, whatever the manifest says.
pub const MAX_DEPTH: usize = 16;
/// Longest single string (text, label, URL) in bytes.
pub const MAX_STRING: usize = 64 << 10;

/// Why a view was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("the view has {count} nodes; the limit is {limit}")]
    TooManyNodes { count: usize, limit: u32 },
    #[error("the view holds {bytes} bytes of text; the limit is {limit}")]
    TooManyBytes { bytes: u64, limit: u64 },
    #[error("the view nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("a string in the view is {0} bytes long; the limit is {MAX_STRING}")]
    StringTooLong(usize),
    #[error("the view has no nodes")]
    Empty,
    #[error("node {node} names child {child}, which is not after it in the node list")]
    BadChild { node: usize, child: u32 },
    #[error("node {0} has more than one parent")]
    SharedChild(u32),
    #[error("node {0} is not reachable from the root")]
    Orphan(usize),
    #[error("node {node}: {message}")]
    BadNode { node: usize, message: String },
}

/// The tree the shell renders. Every string is text, never markup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    pub title: String,
    pub body: Node,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Node {
    Column {
        children: Vec<Node>,
    },
    Row {
        children: Vec<Node>,
    },
    List {
        children: Vec<Node>,
    },
    Text {
        text: String,
        style: &'static str,
    },
    Heading {
        level: u8,
        text: String,
    },
    Image {
        src: String,
        alt: String,
    },
    Form {
        event: String,
        submit_label: String,
        children: Vec<Node>,
    },
    Input {
        name: String,
        label: String,
        kind: &'static str,
        value: String,
        placeholder: String,
        required: bool,
        options: Vec<(String, String)>,
    },
    Button {
        label: String,
        event: String,
        value: Option<String>,
        style: &'static str,
    },
    AppCard {
        app_id: String,
        title: String,
        description: String,
        params: Vec<(String, String)>,
    },
    Divider,
}

struct Checker<'a> {
    nodes: &'a [wit::Node],
    bytes: u64,
    limits: &'a Limits,
}

impl Checker<'_> {
    fn string(&mut self, s: &str) -> Result<String, ViewError> {
        if s.len() > MAX_STRING {
            return Err(ViewError::StringTooLong(s.len()));
        }
        self.bytes += s.len() as u64;
        if self.bytes > self.limits.view_bytes {
            return Err(ViewError::TooManyBytes {
                bytes: self.bytes,
                limit: self.limits.view_bytes,
            });
        }
        Ok(s.to_string())
    }

    fn pairs(&mut self, pairs: &[(String, String)]) -> Result<Vec<(String, String)>, ViewError> {
        pairs
            .iter()
            .map(|(k, v)| Ok((self.string(k)?, self.string(v)?)))
            .collect()
    }

    fn build(&mut self, index: usize, depth: usize, seen: &mut [bool]) -> Result<Node, ViewError> {
        if depth > MAX_DEPTH {
            return Err(ViewError::TooDeep);
        }
        let node = &self.nodes[index];
        let mut children = Vec::with_capacity(node.children.len());
        for &child in &node.children {
            let c = child as usize;
            if c <= index || c >= self.nodes.len() {
                return Err(ViewError::BadChild { node: index, child });
            }
            if std::mem::replace(&mut seen[c], true) {
                return Err(ViewError::SharedChild(child));
            }
            children.push(self.build(c, depth + 1, seen)?);
        }
        let leaf = |children: &Vec<Node>| -> Result<(), ViewError> {
            if children.is_empty() {
                Ok(())
            } else {
                Err(ViewError::BadNode {
                    node: index,
                    message: "this kind of node cannot have children".into(),
                })
            }
        };
        Ok(match &node.kind {
            wit::NodeKind::Column => Node::Column { children },
            wit::NodeKind::Row => Node::Row { children },
            wit::NodeKind::ItemList => Node::List { children },
            wit::NodeKind::Text((text, style)) => {
                leaf(&children)?;
                Node::Text {
                    text: self.string(text)?,
                    style: text_style(*style),
                }
            }
            wit::NodeKind::Heading(h) => {
                leaf(&children)?;
                if !(1..=3).contains(&h.level) {
                    return Err(ViewError::BadNode {
                        node: index,
                        message: format!("heading level {} is not 1 to 3", h.level),
                    });
                }
                Node::Heading {
                    level: h.level,
                    text: self.string(&h.text)?,
                }
            }
            wit::NodeKind::Image(img) => {
                leaf(&children)?;
                if !image_source_allowed(&img.src) {
                    return Err(ViewError::BadNode {
                        node: index,
                        message: "images must be data:image/(png|jpeg|gif|webp);base64 URLs or asset: names".into(),
                    });
                }
                Node::Image {
                    src: self.string(&img.src)?,
                    alt: self.string(&img.alt)?,
                }
            }
            wit::NodeKind::Form(f) => {
                if !event_name_ok(&f.event) {
                    return Err(bad_event(index, &f.event));
                }
                Node::Form {
                    event: self.string(&f.event)?,
                    submit_label: self.string(&f.submit_label)?,
                    children,
                }
            }
            wit::NodeKind::Input(i) => {
                leaf(&children)?;
                Node::Input {
                    name: self.string(&i.name)?,
                    label: self.string(&i.label)?,
                    kind: input_kind(i.kind),
                    value: self.string(&i.value)?,
                    placeholder: self.string(&i.placeholder)?,
                    required: i.required,
                    options: self.pairs(&i.options)?,
                }
            }
            wit::NodeKind::Button(b) => {
                leaf(&children)?;
                if !event_name_ok(&b.event) {
                    return Err(bad_event(index, &b.event));
                }
                let value = match &b.value {
                    Some(v) => Some(self.string(v)?),
                    None => None,
                };
                Node::Button {
                    label: self.string(&b.label)?,
                    event: self.string(&b.event)?,
                    value,
                    style: button_style(b.style),
                }
            }
            wit::NodeKind::AppCard(c) => {
                leaf(&children)?;
                Node::AppCard {
                    app_id: self.string(&c.app_id)?,
                    title: self.string(&c.title)?,
                    description: self.string(&c.description)?,
                    params: self.pairs(&c.params)?,
                }
            }
            wit::NodeKind::Divider => {
                leaf(&children)?;
                Node::Divider
            }
        })
    }
}

fn bad_event(node: usize, name: &str) -> ViewError {
    let shown: String = name.chars().take(40).collect();
    ViewError::BadNode {
        node,
        message: format!(
            "event name `{shown}` must be 1-64 characters of letters, digits, `-`, `_`, `.`"
        ),
    }
}

fn event_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn image_source_allowed(src: &str) -> bool {
    const PREFIXES: [&str; 4] = [
        "data:image/png;base64,",
        "data:image/jpeg;base64,",
        "data:image/gif;base64,",
        "data:image/webp;base64,",
    ];
    if let Some(name) = src.strip_prefix("asset:") {
        return !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    }
    PREFIXES.iter().any(|p| {
        src.strip_prefix(p).is_some_and(|b64| {
            b64.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
        })
    })
}

fn text_style(s: wit::TextStyle) -> &'static str {
    match s {
        wit::TextStyle::Body => "body",
        wit::TextStyle::Muted => "muted",
        wit::TextStyle::Emphasis => "emphasis",
        wit::TextStyle::Error => "error",
    }
}

fn button_style(s: wit::ButtonStyle) -> &'static str {
    match s {
        wit::ButtonStyle::Primary => "primary",
        wit::ButtonStyle::Secondary => "secondary",
        wit::ButtonStyle::Danger => "danger",
    }
}

fn input_kind(k: wit::InputKind) -> &'static str {
    match k {
        wit::InputKind::Text => "text",
        wit::InputKind::Number => "number",
        wit::InputKind::Date => "date",
        wit::InputKind::Time => "time",
        wit::InputKind::Email => "email",
        wit::InputKind::Phone => "phone",
        wit::InputKind::Multiline => "multiline",
        wit::InputKind::Checkbox => "checkbox",
        wit::InputKind::Select => "select",
    }
}

/// Validate a guest view against `limits` and build the tree.
pub fn validate(view: &wit::View, limits: &Limits) -> Result<View, ViewError> {
    if view.nodes.is_empty() {
        return Err(ViewError::Empty);
    }
    if view.nodes.len() > limits.view_nodes as usize {
        return Err(ViewError::TooManyNodes {
            count: view.nodes.len(),
            limit: limits.view_nodes,
        });
    }
    let mut checker = Checker {
        nodes: &view.nodes,
        bytes: 0,
        limits,
    };
    let title = checker.string(&view.title)?;
    let mut seen = vec![false; view.nodes.len()];
    seen[0] = true;
    let body = checker.build(0, 0, &mut seen)?;
    if let Some(orphan) = seen.iter().position(|s| !s) {
        return Err(ViewError::Orphan(orphan));
    }
    Ok(View { title, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: wit::NodeKind, children: Vec<u32>) -> wit::Node {
        wit::Node { kind, children }
    }

    fn text(s: &str) -> wit::NodeKind {
        wit::NodeKind::Text((s.to_string(), wit::TextStyle::Body))
    }

    fn view(nodes: Vec<wit::Node>) -> wit::View {
        wit::View {
            title: "t".into(),
            nodes,
        }
    }

    #[test]
    fn builds_a_tree() {
        let v = view(vec![
            node(wit::NodeKind::Column, vec![1, 2]),
            node(text("a"), vec![]),
            node(wit::NodeKind::Divider, vec![]),
        ]);
        let tree = validate(&v, &Limits::default()).unwrap();
        assert_eq!(
            tree.body,
            Node::Column {
                children: vec![
                    Node::Text {
                        text: "a".into(),
                        style: "body"
                    },
                    Node::Divider
                ]
            }
        );
    }

    #[test]
    fn refuses_cycles_shared_children_and_orphans() {
        let limits = Limits::default();
        let cycle = view(vec![
            node(wit::NodeKind::Column, vec![1]),
            node(wit::NodeKind::Column, vec![0]),
        ]);
        assert_eq!(
            validate(&cycle, &limits),
            Err(ViewError::BadChild { node: 1, child: 0 })
        );
        let shared = view(vec![
            node(wit::NodeKind::Column, vec![1, 2]),
            node(wit::NodeKind::Column, vec![2]),
            node(text("x"), vec![]),
        ]);
        assert_eq!(validate(&shared, &limits), Err(ViewError::SharedChild(2)));
        let orphan = view(vec![
            node(wit::NodeKind::Column, vec![]),
            node(text("x"), vec![]),
        ]);
        assert_eq!(validate(&orphan, &limits), Err(ViewError::Orphan(1)));
        let out_of_range = view(vec![node(wit::NodeKind::Column, vec![7])]);
        assert_eq!(
            validate(&out_of_range, &limits),
            Err(ViewError::BadChild { node: 0, child: 7 })
        );
    }

    #[test]
    fn enforces_size_and_depth() {
        let limits = Limits {
            view_nodes: 3,
            view_bytes: 10,
            ..Limits::default()
        };
        let many = view(
            (0..4)
                .map(|_| node(wit::NodeKind::Divider, vec![]))
                .collect(),
        );
        assert!(matches!(
            validate(&many, &limits),
            Err(ViewError::TooManyNodes { count: 4, limit: 3 })
        ));
        let long = view(vec![
            node(wit::NodeKind::Column, vec![1]),
            node(text("0123456789ab"), vec![]),
        ]);
        assert!(matches!(
            validate(&long, &limits),
            Err(ViewError::TooManyBytes { .. })
        ));
        let deep: Vec<_> = (0..=MAX_DEPTH as u32 + 1)
            .map(|i| {
                node(
                    wit::NodeKind::Column,
                    if i <= MAX_DEPTH as u32 {
                        vec![i + 1]
                    } else {
                        vec![]
                    },
                )
            })
            .collect();
        assert_eq!(
            validate(&view(deep), &Limits::default()),
            Err(ViewError::TooDeep)
        );
    }

    #[test]
    fn refuses_network_images_and_bad_event_names() {
        let limits = Limits::default();
        let img = |src: &str| {
            view(vec![node(
                wit::NodeKind::Image(wit::Image {
                    src: src.into(),
                    alt: "a".into(),
                }),
                vec![],
            )])
        };
        assert!(validate(&img("https://evil.example/x.png"), &limits).is_err());
        assert!(validate(&img("data:image/svg+xml;base64,PHN2Zz4="), &limits).is_err());
        assert!(validate(&img("data:image/png;base64,\"><script>"), &limits).is_err());
        assert!(validate(&img("data:image/png;base64,iVBORw0KGgo="), &limits).is_ok());
        let button = |event: &str| {
            view(vec![node(
                wit::NodeKind::Button(wit::Button {
                    label: "b".into(),
                    event: event.into(),
                    value: None,
                    style: wit::ButtonStyle::Primary,
                }),
                vec![],
            )])
        };
        assert!(validate(&button("javascript:alert(1)"), &limits).is_err());
        assert!(validate(&button("book-slot"), &limits).is_ok());
        let text_with_child = view(vec![
            node(text("a"), vec![1]),
            node(wit::NodeKind::Divider, vec![]),
        ]);
        assert!(matches!(
            validate(&text_with_child, &limits),
            Err(ViewError::BadNode { node: 0, .. })
        ));
    }
}
