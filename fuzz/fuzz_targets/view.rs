//! The view validator on any flat node list a guest could send: an error
//! or a tree within the limits, never a panic or a hang. The list is built
//! from the fuzzer's bytes, so indices, cycles, shared children, sizes and
//! every node kind's fields are all explored.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use superapp_core::Limits;
use superapp_runtime::bindings::superapp::plugin::types as wit;
use superapp_runtime::view::{self, Node};

fn text(u: &mut Unstructured) -> Result<String> {
    // Mostly short strings; now and then a long one.
    if u.ratio(1, 50)? {
        let n = u.int_in_range(0..=80_000)?;
        return Ok("x".repeat(n));
    }
    u.arbitrary()
}

fn pairs(u: &mut Unstructured) -> Result<Vec<(String, String)>> {
    let n = u.int_in_range(0..=80)?;
    (0..n).map(|_| Ok((text(u)?, text(u)?))).collect()
}

fn maybe(u: &mut Unstructured) -> Result<Option<String>> {
    Ok(if u.arbitrary()? { Some(text(u)?) } else { None })
}

fn kind(u: &mut Unstructured) -> Result<wit::NodeKind> {
    use wit::NodeKind as K;
    Ok(match u.int_in_range(0..=14)? {
        0 => K::Column,
        1 => K::Row,
        2 => K::ItemList,
        3 => K::Text((
            text(u)?,
            *u.choose(&[
                wit::TextStyle::Body,
                wit::TextStyle::Muted,
                wit::TextStyle::Emphasis,
                wit::TextStyle::Error,
                wit::TextStyle::Code,
            ])?,
        )),
        4 => K::Heading(wit::Heading {
            level: u.arbitrary()?,
            text: text(u)?,
        }),
        5 => K::Image(wit::Image {
            src: if u.arbitrary()? {
                format!("data:image/png;base64,{}", text(u)?)
            } else {
                text(u)?
            },
            alt: text(u)?,
        }),
        6 => K::Form(wit::Form {
            event: text(u)?,
            submit_label: text(u)?,
        }),
        7 => K::Input(wit::Input {
            name: text(u)?,
            label: text(u)?,
            kind: *u.choose(&[
                wit::InputKind::Text,
                wit::InputKind::Number,
                wit::InputKind::Date,
                wit::InputKind::Time,
                wit::InputKind::Email,
                wit::InputKind::Phone,
                wit::InputKind::Multiline,
                wit::InputKind::Checkbox,
                wit::InputKind::Select,
            ])?,
            value: text(u)?,
            placeholder: text(u)?,
            required: u.arbitrary()?,
            options: pairs(u)?,
            min: maybe(u)?,
            max: maybe(u)?,
        }),
        8 => K::Button(wit::Button {
            label: text(u)?,
            event: text(u)?,
            value: maybe(u)?,
            style: *u.choose(&[
                wit::ButtonStyle::Primary,
                wit::ButtonStyle::Secondary,
                wit::ButtonStyle::Danger,
            ])?,
        }),
        9 => K::AppCard(wit::AppCard {
            app_id: text(u)?,
            title: text(u)?,
            description: text(u)?,
            params: pairs(u)?,
        }),
        10 => K::Divider,
        11 => K::KeyValues(pairs(u)?),
        12 => K::Badge(wit::Badge {
            text: text(u)?,
            tone: *u.choose(&[
                wit::Tone::Neutral,
                wit::Tone::Info,
                wit::Tone::Success,
                wit::Tone::Warning,
                wit::Tone::Danger,
            ])?,
        }),
        13 => K::QrCode(wit::QrCode {
            text: text(u)?,
            caption: text(u)?,
        }),
        _ => K::Column,
    })
}

fn build(u: &mut Unstructured) -> Result<wit::View> {
    let count = u.int_in_range(0..=300)?;
    let mut nodes = Vec::with_capacity(count);
    for i in 0..count {
        let kind = kind(u)?;
        let children = (0..u.int_in_range(0..=6)?)
            .map(|_| {
                // Mostly forward indices, sometimes anything at all.
                if u.ratio(9, 10)? {
                    u.int_in_range(i as u32 + 1..=count as u32 + 1)
                } else {
                    u.arbitrary()
                }
            })
            .collect::<Result<Vec<u32>>>()?;
        nodes.push(wit::Node { kind, children });
    }
    Ok(wit::View {
        title: text(u)?,
        nodes,
    })
}

fn count(node: &Node) -> usize {
    1 + match node {
        Node::Column { children } | Node::Row { children } | Node::List { children } => {
            children.iter().map(count).sum()
        }
        Node::Form { children, .. } => children.iter().map(count).sum(),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(raw) = build(&mut u) else {
        return;
    };
    let limits = Limits {
        memory_bytes: 64 << 20,
        time_ms: 1000,
        view_nodes: 200,
        view_bytes: 256 << 10,
        storage_bytes: 1 << 20,
    };
    if let Ok(tree) = view::validate(&raw, &limits) {
        assert!(count(&tree.body) <= limits.view_nodes as usize);
        assert!(serde_json::to_string(&tree).is_ok());
    }
});
