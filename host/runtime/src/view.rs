//! Checks a mini-program's view and turns it into the tree the shell draws.
//!
//! The guest sends a flat node list (WIT has no recursive types). Here it
//! becomes a nested tree only if it is well formed: every child index points
//! forward, every node but the root has exactly one parent, and node count,
//! depth, string lengths and total text stay within the app's limits.
//! Images must be inline `data:` URLs or the host's own images
//! (`asset:<name>`, [`superapp_core::images::HOST_IMAGES`]), never network
//! URLs.

use serde::Serialize;

use crate::bindings::superapp::plugin::types as wit;
use superapp_core::Limits;

/// Deepest nesting the shell will draw, whatever the manifest says.
pub const MAX_DEPTH: usize = 16;
/// Longest single string (text, label, URL) in bytes.
pub const MAX_STRING: usize = 64 << 10;
/// Longest text a QR code may hold, in bytes: what one code can carry
/// and a phone camera still reads.
pub const MAX_QR_TEXT: usize = 2048;
/// Most QR codes one view may hold: the host draws each (tens of
/// milliseconds for a full one), and a screen shows one or two.
pub const MAX_QR_CODES: usize = 2;
/// Most pairs one key-value list may hold.
pub const MAX_PAIRS: usize = 64;
/// Longest badge text, in bytes.
pub const MAX_BADGE: usize = 40;

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
        #[serde(skip_serializing_if = "Option::is_none")]
        min: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max: Option<String>,
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
    KeyValues {
        pairs: Vec<(String, String)>,
    },
    Badge {
        text: String,
        tone: &'static str,
    },
    QrCode {
        text: String,
        caption: String,
        /// The code the host drew: one string per row, `1` for a dark
        /// module, without the quiet zone.
        modules: Vec<String>,
    },
}

/// The modules of a QR code of `text`, one string per row (`1` dark, `0`
/// light), or `None` if it does not fit in one code.
pub fn qr_modules(text: &str) -> Option<Vec<String>> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    Some(
        colors
            .chunks(width)
            .map(|row| {
                row.iter()
                    .map(|c| if *c == qrcode::Color::Dark { '1' } else { '0' })
                    .collect()
            })
            .collect(),
    )
}

struct Checker<'a> {
    nodes: &'a [wit::Node],
    bytes: u64,
    limits: &'a Limits,
    qr_codes: usize,
}

impl Checker<'_> {
    fn string(&mut self, s: &str) -> Result<String, ViewError> {
        if s.len() > MAX_STRING {
            return Err(ViewError::StringTooLong(s.len()));
        }
        self.count(s.len())?;
        Ok(s.to_string())
    }

    /// Count `bytes` more of the view against its limit.
    fn count(&mut self, bytes: usize) -> Result<(), ViewError> {
        self.bytes += bytes as u64;
        if self.bytes > self.limits.view_bytes {
            return Err(ViewError::TooManyBytes {
                bytes: self.bytes,
                limit: self.limits.view_bytes,
            });
        }
        Ok(())
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
                        message: format!(
                            "images must be data:image/(png|jpeg|gif|webp);base64 URLs or one of the host's images: {}",
                            superapp_core::images::HOST_IMAGES.map(|n| format!("asset:{n}")).join(", ")
                        ),
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
                check_range(i).map_err(|message| ViewError::BadNode {
                    node: index,
                    message,
                })?;
                Node::Input {
                    name: self.string(&i.name)?,
                    label: self.string(&i.label)?,
                    kind: input_kind(i.kind),
                    value: self.string(&i.value)?,
                    placeholder: self.string(&i.placeholder)?,
                    required: i.required,
                    options: self.pairs(&i.options)?,
                    min: i.min.as_deref().map(|m| self.string(m)).transpose()?,
                    max: i.max.as_deref().map(|m| self.string(m)).transpose()?,
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
            wit::NodeKind::KeyValues(pairs) => {
                leaf(&children)?;
                if pairs.len() > MAX_PAIRS {
                    return Err(bad(
                        index,
                        format!("a key-value list holds at most {MAX_PAIRS} pairs"),
                    ));
                }
                Node::KeyValues {
                    pairs: self.pairs(pairs)?,
                }
            }
            wit::NodeKind::Badge(b) => {
                leaf(&children)?;
                if b.text.trim().is_empty() || b.text.len() > MAX_BADGE {
                    return Err(bad(
                        index,
                        format!("a badge's text is 1 to {MAX_BADGE} bytes"),
                    ));
                }
                Node::Badge {
                    text: self.string(&b.text)?,
                    tone: tone(b.tone),
                }
            }
            wit::NodeKind::QrCode(q) => {
                leaf(&children)?;
                if q.text.is_empty() || q.text.len() > MAX_QR_TEXT {
                    return Err(bad(
                        index,
                        format!("a QR code holds 1 to {MAX_QR_TEXT} bytes of text"),
                    ));
                }
                self.qr_codes += 1;
                if self.qr_codes > MAX_QR_CODES {
                    return Err(bad(
                        index,
                        format!("a view holds at most {MAX_QR_CODES} QR codes"),
                    ));
                }
                let text = self.string(&q.text)?;
                let caption = self.string(&q.caption)?;
                let modules = qr_modules(&q.text)
                    .ok_or_else(|| bad(index, "the text does not fit in a QR code".into()))?;
                // What the host drew goes out with the view, and counts.
                self.count(modules.iter().map(String::len).sum())?;
                Node::QrCode {
                    text,
                    caption,
                    modules,
                }
            }
        })
    }
}

fn bad(node: usize, message: String) -> ViewError {
    ViewError::BadNode { node, message }
}

/// A range is allowed on date, time and number inputs only; both bounds
/// must parse as that kind, `min` not after `max`, and a preset value
/// inside them.
fn check_range(input: &wit::Input) -> Result<(), String> {
    if input.min.is_none() && input.max.is_none() {
        return Ok(());
    }
    type Parse = fn(&str) -> Option<i64>;
    let parse: Parse = match input.kind {
        wit::InputKind::Date => parse_date,
        wit::InputKind::Time => parse_time,
        wit::InputKind::Number => |s| s.parse::<i64>().ok(),
        _ => return Err("only date, time and number inputs take a min or max".into()),
    };
    let bound = |b: &Option<String>| -> Result<Option<i64>, String> {
        b.as_deref()
            .map(|v| {
                parse(v).ok_or_else(|| {
                    format!(
                        "`{}` is not a valid bound for this input",
                        v.chars().take(40).collect::<String>()
                    )
                })
            })
            .transpose()
    };
    let (min, max) = (bound(&input.min)?, bound(&input.max)?);
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            return Err("the input's min is after its max".into());
        }
    }
    if !input.value.is_empty() {
        let value = parse(&input.value).ok_or("the input's value does not parse")?;
        if min.is_some_and(|lo| value < lo) || max.is_some_and(|hi| value > hi) {
            return Err("the input's value is outside its range".into());
        }
    }
    Ok(())
}

/// `YYYY-MM-DD` as a comparable number, if it is a real calendar date.
fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        s.get(r)?.bytes().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days).contains(&d).then_some(y * 10_000 + m * 100 + d)
}

/// `HH:MM` as minutes since midnight.
fn parse_time(s: &str) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
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
        return superapp_core::images::is_host_image(name);
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
        wit::TextStyle::Code => "code",
    }
}

fn tone(t: wit::Tone) -> &'static str {
    match t {
        wit::Tone::Neutral => "neutral",
        wit::Tone::Info => "info",
        wit::Tone::Success => "success",
        wit::Tone::Warning => "warning",
        wit::Tone::Danger => "danger",
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
/// Whether checking `view` draws QR codes (work to keep off the threads
/// that serve requests).
pub fn draws_qr_codes(view: &wit::View) -> bool {
    view.nodes
        .iter()
        .any(|n| matches!(n.kind, wit::NodeKind::QrCode(_)))
}

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
        qr_codes: 0,
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
        // The host's own images by name, and nothing else under `asset:`.
        for name in superapp_core::images::HOST_IMAGES {
            assert!(validate(&img(&format!("asset:{name}")), &limits).is_ok());
        }
        for bad in ["asset:", "asset:logo", "asset:../api", "asset:Calendar"] {
            let refused = validate(&img(bad), &limits).unwrap_err().to_string();
            assert!(
                refused.contains("asset:calendar, asset:check"),
                "{bad}: {refused}"
            );
        }
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

    fn input(kind: wit::InputKind, value: &str, min: Option<&str>, max: Option<&str>) -> wit::View {
        view(vec![node(
            wit::NodeKind::Input(wit::Input {
                name: "day".into(),
                label: "Day".into(),
                kind,
                value: value.into(),
                placeholder: String::new(),
                required: true,
                options: vec![],
                min: min.map(Into::into),
                max: max.map(Into::into),
            }),
            vec![],
        )])
    }

    #[test]
    fn date_ranges_must_parse_be_ordered_and_hold_the_value() {
        use wit::InputKind::{Date, Number, Text, Time};
        let limits = Limits::default();
        let ok = |v: &wit::View| validate(v, &limits).is_ok();
        assert!(ok(&input(Date, "", Some("2026-11-25"), Some("2026-12-08"))));
        assert!(ok(&input(
            Date,
            "2026-12-01",
            Some("2026-11-25"),
            Some("2026-12-08")
        )));
        assert!(
            ok(&input(Date, "2028-02-29", None, None)),
            "a leap day without a range"
        );
        assert!(
            !ok(&input(Date, "", Some("2026-02-30"), None)),
            "no such day"
        );
        assert!(
            !ok(&input(Date, "", Some("2026-12-08"), Some("2026-11-25"))),
            "min after max"
        );
        assert!(
            !ok(&input(
                Date,
                "2027-01-01",
                Some("2026-11-25"),
                Some("2026-12-08")
            )),
            "value outside"
        );
        assert!(!ok(&input(Date, "", Some("25.11.2026"), None)));
        assert!(ok(&input(Time, "09:30", Some("08:00"), Some("17:00"))));
        assert!(!ok(&input(Time, "", Some("24:00"), None)));
        assert!(ok(&input(Number, "3", Some("1"), Some("9"))));
        assert!(
            !ok(&input(Text, "", Some("a"), None)),
            "text takes no range"
        );
    }

    #[test]
    fn badges_qr_codes_and_key_values_are_bounded() {
        let limits = Limits::default();
        let one = |kind| validate(&view(vec![node(kind, vec![])]), &limits);
        let badge = |text: &str| {
            wit::NodeKind::Badge(wit::Badge {
                text: text.into(),
                tone: wit::Tone::Success,
            })
        };
        assert!(one(badge("Paid")).is_ok());
        assert!(one(badge("")).is_err());
        assert!(one(badge(&"x".repeat(MAX_BADGE + 1))).is_err());
        let qr = |text: String| {
            wit::NodeKind::QrCode(wit::QrCode {
                text,
                caption: "Show this".into(),
            })
        };
        assert!(one(qr("x".repeat(MAX_QR_TEXT))).is_ok());
        assert!(one(qr("x".repeat(MAX_QR_TEXT + 1))).is_err());
        assert!(one(qr(String::new())).is_err());
        let Ok(View {
            body: Node::QrCode { modules, .. },
            ..
        }) = one(qr("superapp-challenge:v:n".into()))
        else {
            panic!("a QR code node");
        };
        // Two codes on a screen, not more: the host draws each.
        let codes = |n: u32| {
            let mut nodes = vec![node(wit::NodeKind::Column, (1..=n).collect())];
            nodes.extend((0..n).map(|i| node(qr(format!("code {i}")), vec![])));
            validate(&view(nodes), &limits)
        };
        assert!(codes(MAX_QR_CODES as u32).is_ok());
        assert!(
            matches!(codes(MAX_QR_CODES as u32 + 1), Err(ViewError::BadNode { message, .. }) if message.contains("at most"))
        );
        // What the host drew counts against the view's bytes: a full code
        // is about 31 000 modules.
        let tight = Limits {
            view_bytes: 20_000,
            ..Limits::default()
        };
        assert!(matches!(
            validate(
                &view(vec![node(qr("x".repeat(MAX_QR_TEXT)), vec![])]),
                &tight
            ),
            Err(ViewError::TooManyBytes { .. })
        ));
        // A version-2 code is 25 modules square, with its three finders.
        assert_eq!(modules.len(), 25);
        assert!(modules.iter().all(|row| row.len() == 25));
        assert!(modules[0].starts_with("1111111") && modules[0].ends_with("1111111"));
        let pairs = |n: usize| {
            wit::NodeKind::KeyValues((0..n).map(|i| (i.to_string(), "v".into())).collect())
        };
        assert!(one(pairs(MAX_PAIRS)).is_ok());
        assert!(one(pairs(MAX_PAIRS + 1)).is_err());
        let with_child = view(vec![
            node(pairs(1), vec![1]),
            node(wit::NodeKind::Divider, vec![]),
        ]);
        assert!(
            validate(&with_child, &limits).is_err(),
            "a leaf has no children"
        );
    }
}
