//! A builder for views: nested Rust values that flatten into the contract's
//! bounded node list. The host draws them; a mini-program never ships HTML.

use crate::bindings::superapp::plugin::types as wit;

pub use wit::{ButtonStyle, InputKind, TextStyle, Tone};

/// One element of a view.
#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    /// Children stacked vertically.
    Column(Vec<Element>),
    /// Children side by side.
    Row(Vec<Element>),
    /// A bulleted list; each child is one item.
    List(Vec<Element>),
    Text(String, TextStyle),
    /// Level 1 to 3.
    Heading(u8, String),
    /// A `data:image/(png|jpeg|gif|webp);base64,` URL or one of the host's
    /// own images, `asset:<name>` (calendar, check, clock, document,
    /// hospital, info, person, receipt, wallet, warning), with alt text.
    Image {
        src: String,
        alt: String,
    },
    Form(Form),
    Input(Input),
    Button(Button),
    AppCard(AppCard),
    Divider,
    /// Label and value pairs: a receipt, an appointment's details.
    KeyValues(Vec<(String, String)>),
    /// A short status label.
    Badge(String, Tone),
    /// A QR code the host draws from `text`, with a caption.
    QrCode {
        text: String,
        caption: String,
    },
}

/// A screen: a title and a column of elements.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub title: String,
    pub body: Vec<Element>,
}

impl View {
    pub fn new(title: impl Into<String>) -> Self {
        View {
            title: title.into(),
            body: Vec::new(),
        }
    }

    /// Append any element.
    pub fn push(mut self, element: impl Into<Element>) -> Self {
        self.body.push(element.into());
        self
    }

    /// Append a level-1 heading.
    pub fn heading(self, text: impl Into<String>) -> Self {
        self.push(Element::Heading(1, text.into()))
    }

    /// Append a level-2 heading.
    pub fn subheading(self, text: impl Into<String>) -> Self {
        self.push(Element::Heading(2, text.into()))
    }

    /// Append a paragraph of body text.
    pub fn text(self, text: impl Into<String>) -> Self {
        self.push(Element::Text(text.into(), TextStyle::Body))
    }

    /// Append a paragraph in the given style.
    pub fn styled(self, text: impl Into<String>, style: TextStyle) -> Self {
        self.push(Element::Text(text.into(), style))
    }

    pub fn button(self, button: Button) -> Self {
        self.push(button)
    }

    pub fn form(self, form: Form) -> Self {
        self.push(form)
    }

    /// Append a bulleted list of text items.
    pub fn list<I, S>(self, items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let items = items
            .into_iter()
            .map(|s| Element::Text(s.into(), TextStyle::Body))
            .collect();
        self.push(Element::List(items))
    }

    pub fn divider(self) -> Self {
        self.push(Element::Divider)
    }

    /// Append label and value pairs, e.g. a receipt.
    pub fn details<I, K, V>(self, pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.push(Element::details(pairs))
    }

    /// Append a status badge.
    pub fn badge(self, text: impl Into<String>, tone: Tone) -> Self {
        self.push(Element::Badge(text.into(), tone))
    }

    /// Append a QR code of `text` with a caption (the host draws it).
    pub fn qr_code(self, text: impl Into<String>, caption: impl Into<String>) -> Self {
        self.push(Element::QrCode {
            text: text.into(),
            caption: caption.into(),
        })
    }

    /// Append monospaced, copyable text.
    pub fn code(self, text: impl Into<String>) -> Self {
        self.push(Element::Text(text.into(), TextStyle::Code))
    }

    /// Flatten into the contract's node list: node 0 is a column holding the
    /// body, and every node's children come after it (pre-order).
    pub fn into_wit(self) -> wit::View {
        let mut nodes = Vec::new();
        flatten(Element::Column(self.body), &mut nodes);
        wit::View {
            title: self.title,
            nodes,
        }
    }
}

fn flatten(element: Element, nodes: &mut Vec<wit::Node>) -> u32 {
    let index = nodes.len();
    let (kind, children) = match element {
        Element::Column(c) => (wit::NodeKind::Column, c),
        Element::Row(c) => (wit::NodeKind::Row, c),
        Element::List(c) => (wit::NodeKind::ItemList, c),
        Element::Text(t, style) => (wit::NodeKind::Text((t, style)), Vec::new()),
        Element::Heading(level, text) => (
            wit::NodeKind::Heading(wit::Heading { level, text }),
            Vec::new(),
        ),
        Element::Image { src, alt } => (wit::NodeKind::Image(wit::Image { src, alt }), Vec::new()),
        Element::Form(f) => (
            wit::NodeKind::Form(wit::Form {
                event: f.event,
                submit_label: f.submit_label,
            }),
            f.children,
        ),
        Element::Input(i) => (wit::NodeKind::Input(i.into_wit()), Vec::new()),
        Element::Button(b) => (
            wit::NodeKind::Button(wit::Button {
                label: b.label,
                event: b.event,
                value: b.value,
                style: b.style,
            }),
            Vec::new(),
        ),
        Element::AppCard(c) => (wit::NodeKind::AppCard(c.into_wit()), Vec::new()),
        Element::Divider => (wit::NodeKind::Divider, Vec::new()),
        Element::KeyValues(pairs) => (wit::NodeKind::KeyValues(pairs), Vec::new()),
        Element::Badge(text, tone) => (wit::NodeKind::Badge(wit::Badge { text, tone }), Vec::new()),
        Element::QrCode { text, caption } => (
            wit::NodeKind::QrCode(wit::QrCode { text, caption }),
            Vec::new(),
        ),
    };
    nodes.push(wit::Node {
        kind,
        children: Vec::new(),
    });
    let child_indices = children.into_iter().map(|c| flatten(c, nodes)).collect();
    nodes[index].children = child_indices;
    index as u32
}

impl Element {
    /// Body text.
    pub fn text(text: impl Into<String>) -> Self {
        Element::Text(text.into(), TextStyle::Body)
    }

    /// Label and value pairs.
    pub fn details<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Element::KeyValues(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// A button that sends `event` (with an optional value) when pressed.
#[derive(Debug, Clone, PartialEq)]
pub struct Button {
    pub label: String,
    pub event: String,
    pub value: Option<String>,
    pub style: ButtonStyle,
}

impl Button {
    pub fn new(label: impl Into<String>, event: impl Into<String>) -> Self {
        Button {
            label: label.into(),
            event: event.into(),
            value: None,
            style: ButtonStyle::Primary,
        }
    }

    /// Attach a value, delivered as `Action::value`.
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = Some(value.into());
        self
    }

    pub fn style(mut self, style: ButtonStyle) -> Self {
        self.style = style;
        self
    }
}

impl From<Button> for Element {
    fn from(b: Button) -> Self {
        Element::Button(b)
    }
}

/// A form: inputs (and help text) submitted together as one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub event: String,
    pub submit_label: String,
    pub children: Vec<Element>,
}

impl Form {
    pub fn new(event: impl Into<String>, submit_label: impl Into<String>) -> Self {
        Form {
            event: event.into(),
            submit_label: submit_label.into(),
            children: Vec::new(),
        }
    }

    pub fn input(mut self, input: Input) -> Self {
        self.children.push(Element::Input(input));
        self
    }

    /// Help text between inputs.
    pub fn note(mut self, text: impl Into<String>) -> Self {
        self.children
            .push(Element::Text(text.into(), TextStyle::Muted));
        self
    }
}

impl From<Form> for Element {
    fn from(f: Form) -> Self {
        Element::Form(f)
    }
}

/// One form input.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub name: String,
    pub label: String,
    pub kind: InputKind,
    pub value: String,
    pub placeholder: String,
    pub required: bool,
    pub options: Vec<(String, String)>,
    pub min: Option<String>,
    pub max: Option<String>,
}

impl Input {
    pub fn new(kind: InputKind, name: impl Into<String>, label: impl Into<String>) -> Self {
        Input {
            name: name.into(),
            label: label.into(),
            kind,
            value: String::new(),
            placeholder: String::new(),
            required: false,
            options: Vec::new(),
            min: None,
            max: None,
        }
    }

    pub fn text(name: impl Into<String>, label: impl Into<String>) -> Self {
        Input::new(InputKind::Text, name, label)
    }

    /// A drop-down of (value, label) pairs.
    pub fn select<I, V, L>(name: impl Into<String>, label: impl Into<String>, options: I) -> Self
    where
        I: IntoIterator<Item = (V, L)>,
        V: Into<String>,
        L: Into<String>,
    {
        let mut input = Input::new(InputKind::Select, name, label);
        input.options = options
            .into_iter()
            .map(|(v, l)| (v.into(), l.into()))
            .collect();
        input
    }

    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = value.into();
        self
    }

    pub fn placeholder(mut self, placeholder: impl Into<String>) -> Self {
        self.placeholder = placeholder.into();
        self
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// A date picker (`YYYY-MM-DD`) offering only `min..=max`.
    pub fn date_between(
        name: impl Into<String>,
        label: impl Into<String>,
        min: impl Into<String>,
        max: impl Into<String>,
    ) -> Self {
        Input::new(InputKind::Date, name, label).range(min, max)
    }

    /// The smallest and largest value a date, time or number input offers.
    pub fn range(mut self, min: impl Into<String>, max: impl Into<String>) -> Self {
        self.min = Some(min.into());
        self.max = Some(max.into());
        self
    }

    fn into_wit(self) -> wit::Input {
        wit::Input {
            name: self.name,
            label: self.label,
            kind: self.kind,
            value: self.value,
            placeholder: self.placeholder,
            required: self.required,
            options: self.options,
            min: self.min,
            max: self.max,
        }
    }
}

impl From<Input> for Element {
    fn from(i: Input) -> Self {
        Element::Input(i)
    }
}

/// A link that opens a mini-program with parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct AppCard {
    pub app_id: String,
    pub title: String,
    pub description: String,
    pub params: Vec<(String, String)>,
}

impl AppCard {
    pub fn new(app_id: impl Into<String>, title: impl Into<String>) -> Self {
        AppCard {
            app_id: app_id.into(),
            title: title.into(),
            description: String::new(),
            params: Vec::new(),
        }
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    pub(crate) fn into_wit(self) -> wit::AppCard {
        wit::AppCard {
            app_id: self.app_id,
            title: self.title,
            description: self.description,
            params: self.params,
        }
    }
}

impl From<AppCard> for Element {
    fn from(c: AppCard) -> Self {
        Element::AppCard(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattening_puts_children_after_their_parent() {
        let view = View::new("t")
            .heading("h")
            .form(Form::new("save", "Save").input(Input::text("name", "Name")))
            .list(["a", "b"])
            .into_wit();
        // root column, heading, form, input, list, a, b
        assert_eq!(view.nodes.len(), 7);
        assert_eq!(view.nodes[0].children, vec![1, 2, 4]);
        assert_eq!(view.nodes[2].children, vec![3]);
        assert_eq!(view.nodes[4].children, vec![5, 6]);
        for (i, node) in view.nodes.iter().enumerate() {
            assert!(node.children.iter().all(|&c| c as usize > i));
        }
    }
}
