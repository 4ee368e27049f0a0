//! Short labels people read about each other: display names, group
//! titles, transfer memos. They are shown beside text that matters (who
//! sent what, who was paid), so characters that change how the text
//! around them reads are refused.

/// Whether `c` may not appear in a label: control characters, the line
/// and paragraph separators (U+2028, U+2029: line breaks by another name),
/// and the bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069), which can make a label display as something else
/// (U+202E before `gpj.exe` shows it as `exe.jpg`). The implicit marks (U+200E, U+200F)
/// stay allowed: right-to-left scripts need them.
pub fn disallowed_in_label(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Whether `c` may not appear in a chat message: control characters other
/// than line breaks and tabs (NUL, the terminal escape, …), and the
/// direction overrides (U+202D, U+202E), which show the text after them in
/// an order it was not written in (`invoice_\u{202E}fdp.exe` reads as
/// `invoice_exe.pdf`). Embeddings, isolates and marks stay allowed: text
/// mixing right-to-left and left-to-right scripts needs them.
pub fn disallowed_in_message(c: char) -> bool {
    (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || matches!(c, '\u{202D}' | '\u{202E}')
}

/// Whether `c` may not appear in the name of a party others trust (a
/// publisher, an auditor, a document issuer, an app): as for labels, and
/// every character Unicode says to draw as nothing when it is not
/// supported (Default_Ignorable_Code_Point: zero-width spaces, direction
/// marks, the word joiner and invisible operators, the byte order mark,
/// the soft hyphen, variation selectors, tags, Hangul fillers, …), with
/// which `Pub\u{200B}A` reads as `PubA` but is another name; and the
/// braille blank and the interlinear annotation marks. The zero-width
/// joiner and non-joiner are refused here too: [`name_problem`] lets them
/// stand between two letters of a script that needs them.
pub fn disallowed_in_name(c: char) -> bool {
    disallowed_in_label(c)
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFFB}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// The most combining marks a name may stack on one character: enough
/// for the scripts that stack them (Vietnamese, Hebrew with its points,
/// Indic vowel signs), not for text drawn over its neighbours.
const MAX_STACKED_MARKS: usize = 4;

/// Marks stacked past what any script writes spill over the lines around
/// the text and hide what is there.
fn stacked_marks(chars: &[char]) -> Option<String> {
    overstacked(chars)
        .then(|| format!("must not stack more than {MAX_STACKED_MARKS} marks on one character"))
}

/// Whether more than [`MAX_STACKED_MARKS`] marks follow one character:
/// joiners between them (U+200C, U+200D), which draw nothing, do not end
/// the stack.
fn overstacked(chars: &[char]) -> bool {
    let mut stacked = 0;
    for &c in chars {
        if unicode_normalization::char::is_combining_mark(c) {
            stacked += 1;
            if stacked > MAX_STACKED_MARKS {
                return true;
            }
        } else if !matches!(c, '\u{200C}' | '\u{200D}') {
            stacked = 0;
        }
    }
    false
}

/// Whether `text` stacks more combining marks on one character than any
/// script writes (more than four): text drawn over the lines around it.
pub fn stacks_marks(text: &str) -> bool {
    overstacked(&text.chars().collect::<Vec<_>>())
}

/// Why `label` cannot be a label people read about each other (a display
/// name, a group title), if it cannot: nothing that shows, longer than
/// `max` characters, a character [`disallowed_in_label`] refuses, marks
/// stacked past what any script writes, or a character drawn as nothing
/// at either end (where it joins nothing and only hides).
pub fn label_problem(label: &str, max: usize) -> Option<String> {
    if visible_chars(label) == 0 {
        return Some("must show at least one character".into());
    }
    if label.chars().count() > max {
        return Some(format!("must be at most {max} characters"));
    }
    if label.chars().any(disallowed_in_label) {
        return Some("must not hold control or text-direction characters".into());
    }
    let chars: Vec<char> = label.chars().collect();
    if let Some(problem) = stacked_marks(&chars) {
        return Some(problem);
    }
    let invisible = |c: Option<&char>| c.is_some_and(|c| disallowed_in_name(*c));
    if invisible(chars.first()) || invisible(chars.last()) {
        return Some("must not start or end with a character that shows as nothing".into());
    }
    None
}

/// Why `name` cannot name a party others trust, if it cannot: empty or
/// blank, longer than `max` characters, spaces around it, or a character
/// [`disallowed_in_name`] refuses, but for a zero-width joiner or
/// non-joiner between two characters outside ASCII that show (Persian and
/// Indic scripts, emoji sequences need them; beside ASCII letters they
/// only hide).
pub fn name_problem(name: &str, max: usize) -> Option<String> {
    if visible_chars(name) == 0 {
        return Some("must show at least one character".into());
    }
    if name.trim() != name {
        return Some("must not start or end with spaces".into());
    }
    if name.chars().count() > max {
        return Some(format!("must be at most {max} characters"));
    }
    let chars: Vec<char> = name.chars().collect();
    if let Some(problem) = stacked_marks(&chars) {
        return Some(problem);
    }
    // A letter, mark or symbol outside ASCII that shows (a virama, an emoji).
    let script_letter = |c: Option<&char>| {
        c.is_some_and(|c| !c.is_ascii() && !c.is_whitespace() && !disallowed_in_name(*c))
    };
    chars
        .iter()
        .enumerate()
        .find(|(i, c)| {
            let joiner = matches!(c, '\u{200C}' | '\u{200D}');
            let joins_script = joiner
                && i.checked_sub(1)
                    .is_some_and(|p| script_letter(chars.get(p)))
                && script_letter(chars.get(i + 1));
            disallowed_in_name(**c) && !joins_script
        })
        .map(|(_, c)| format!("must not contain {}", c.escape_unicode()))
}

/// Why `id` cannot identify a party (a publisher), if it cannot: as for
/// its name ([`name_problem`], at most 200 characters), and since it is
/// also a path segment of the registry's addresses, no `/ \ ? # %` and not
/// only dots.
pub fn id_problem(id: &str) -> Option<String> {
    if let Some(problem) = name_problem(id, 200) {
        return Some(problem);
    }
    if let Some(c) = id
        .chars()
        .find(|c| matches!(c, '/' | '\\' | '?' | '#' | '%'))
    {
        return Some(format!(
            "must not contain `{c}`: it is part of the registry's addresses"
        ));
    }
    if id.chars().all(|c| c == '.') {
        return Some("must not be only dots: it is part of the registry's addresses".into());
    }
    None
}

/// Whether `key` may name a request for idempotency (a transfer's, an
/// order's, a refund's, a top-up's): 1 to `max` bytes, and since it is
/// shown in the audit log and sent on to providers, no control character
/// nor any that [`disallowed_in_name`] refuses (bidi controls, zero-width
/// characters, line separators).
pub fn valid_key(key: &str, max: usize) -> bool {
    !key.is_empty() && key.len() <= max && !key.chars().any(disallowed_in_name)
}

/// What a party's id or name comes to when compatibility forms (NFKC:
/// fullwidth letters, ligatures, Roman numerals), the accents of Latin,
/// Greek and Cyrillic letters (`Bánk` passes for `Bank` at a glance), case,
/// spacing, punctuation, invisible characters and letters that draw alike (Unicode's confusables, UTS #39: Cyrillic `а` and Latin
/// `a`, `1` and `l`, `rn` and `m`) are set aside. It is read two ways, as
/// written and in lower case, since some letters draw alike only in one
/// (`I` and `l`, Cyrillic `В` and Latin `B`; `CLINIC` and `clinic`): one
/// or two skeletons. Two names that share one would pass for each other
/// ([`look_alike`]).
pub fn skeletons(name: &str) -> Vec<String> {
    use unicode_normalization::UnicodeNormalization as _;
    let letters: String = name.nfkc().filter(|c| c.is_alphanumeric()).collect();
    let lower: String = letters.chars().flat_map(char::to_lowercase).collect();
    let mut skeletons = vec![confusable_folded(&letters)];
    let in_lower_case = confusable_folded(&lower);
    if in_lower_case != skeletons[0] {
        skeletons.push(in_lower_case);
    }
    skeletons
}

/// `text` with each character mapped to the confusables' representative,
/// which may be a capital (`0` maps to `O`) and comes decomposed: folded to
/// lower case, rid of the combining accents of Latin, Greek and Cyrillic
/// (U+0300 to U+036F; other scripts' marks change a word more than its
/// look, and stay) and put back together. What the map gives is kept,
/// letter or not (Arabic-Indic zero maps to `.`).
fn confusable_folded(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    unicode_security::confusable_detection::skeleton(text)
        .flat_map(char::to_lowercase)
        .filter(|c| !('\u{300}'..='\u{36F}').contains(c))
        .nfc()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// Whether two ids or names would pass for each other: they share a
/// skeleton ([`skeletons`]).
pub fn look_alike(a: &str, b: &str) -> bool {
    let theirs = skeletons(b);
    skeletons(a).iter().any(|s| theirs.contains(s))
}

/// The longest start of `text` of at most `max` bytes that ends between
/// two characters.
pub fn prefix(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

/// `text` cut to at most `max` bytes, and an ellipsis where it was cut:
/// what a message that quotes its caller's input passes on of it, so a
/// megabyte sent is not a megabyte answered or logged.
pub fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    format!("{}…", prefix(text, max)).into()
}

/// `text` with each of its lines cut as [`clip`] cuts, and at most
/// [`MAX_LINES`] of them: a message that quotes a long line of its input
/// (a parser's excerpt with its caret under it) keeps its shape and the
/// reason that follows, and one of a million short lines stays short.
pub fn clip_lines(text: &str, max_line: usize) -> std::borrow::Cow<'_, str> {
    let count = text.lines().count();
    if count <= MAX_LINES && text.lines().all(|line| line.len() <= max_line) {
        return text.into();
    }
    let mut lines: Vec<_> = text
        .lines()
        .take(MAX_LINES)
        .map(|line| clip(line, max_line))
        .collect();
    if count > MAX_LINES {
        lines.push(format!("… ({} more lines)", count - MAX_LINES).into());
    }
    lines.join("\n").into()
}

/// `text` with the characters that would turn it around or act on a
/// terminal (controls but line breaks and tabs, the line and paragraph
/// separators, direction embeddings, overrides and isolates) written as
/// `\u{202e}`: for quoting untrusted input in a message read beside other
/// text.
pub fn escape_turning(text: &str) -> std::borrow::Cow<'_, str> {
    let turns = |c: char| disallowed_in_label(c) && !matches!(c, '\n' | '\t');
    if !text.chars().any(turns) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if turns(c) {
                format!("\\u{{{:x}}}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// The most lines [`clip_lines`] keeps.
const MAX_LINES: usize = 64;

/// How many characters of `text` show as something: not spaces, nor
/// format characters (zero-width spaces and joiners, direction marks and
/// isolates, the word joiner and invisible operators, the byte order mark,
/// the soft hyphen, tags, interlinear annotation and shorthand format
/// controls), nor marks (combining marks, variation selectors, enclosing
/// keycaps), which draw on another character or as nothing, nor
/// unassigned code points, nor the fillers that draw as blank (Hangul,
/// braille). A label of only those would read as blank, or as whatever
/// stands next to it.
pub fn visible_chars(text: &str) -> usize {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory as _};
    text.chars()
        .filter(|&c| {
            !c.is_whitespace()
                && !matches!(
                    c.general_category(),
                    G::NonspacingMark
                        | G::EnclosingMark
                        | G::Format
                        | G::Control
                        | G::Unassigned
                        | G::SpaceSeparator
                        | G::LineSeparator
                        | G::ParagraphSeparator
                )
                && !matches!(
                    c,
                    // Fillers that draw as blank: Hangul, braille,
                    // Mongolian vowel separator.
                    '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}' | '\u{180E}'
                )
        })
        .count()
}

/// The subdivision flags Unicode recommends for general use (RGI): the
/// only emoji tag sequences there are (England, Scotland, Wales).
const FLAG_TAGS: [&str; 3] = ["gbeng", "gbsct", "gbwls"];

/// Whether `text` has tag characters (U+E0000–U+E007F) outside an emoji
/// tag sequence Unicode recommends (a black flag U+1F3F4, then the tags of
/// `gbeng`, `gbsct` or `gbwls`, then the cancel tag U+E007F: the flags of
/// England, Scotland and Wales): tags draw as nothing, so text written in
/// them hides inside a message that reads as something else, even behind
/// a row of black flags.
pub fn stray_tags(text: &str) -> bool {
    let tag = |c: char| ('\u{E0000}'..='\u{E007F}').contains(&c);
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !tag(chars[i]) {
            i += 1;
            continue;
        }
        // A run of tags: a sequence only right after a black flag, spelling
        // one of the recommended flags in tag letters, ended by the cancel tag.
        let start = i;
        while i < chars.len() && tag(chars[i]) && chars[i] != '\u{E007F}' {
            i += 1;
        }
        let spelled: Option<String> = chars[start..i]
            .iter()
            .map(|&c| char::from_u32(c as u32 - 0xE0000))
            .collect();
        let flagged = start > 0 && chars[start - 1] == '\u{1F3F4}';
        let known = spelled.is_some_and(|s| FLAG_TAGS.contains(&s.as_str()));
        if !(flagged && known && chars.get(i) == Some(&'\u{E007F}')) {
            return true;
        }
        i += 1;
    }
    false
}

/// `text` with control characters escaped (`\n`, `\u{1b}`, …), and those
/// that make text display as something else ([`disallowed_in_name`]: bidi
/// controls, zero-width and other invisible characters), but those in
/// `keep` (a terminal's line breaks and tabs, where lines are wanted): for
/// text others wrote that goes to a log or a terminal, where control
/// characters would forge lines or be taken as commands.
pub fn escape_controls<'a>(text: &'a str, keep: &[char]) -> std::borrow::Cow<'a, str> {
    let escaped = |c: char| disallowed_in_name(c) && !keep.contains(&c);
    if !text.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| {
                if escaped(c) {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Whether `c` may not appear in a note (an auditor's reasons, a yank's):
/// as for labels, but a note may run over lines. Notes are printed on
/// operators' terminals, where control characters would be escape codes.
pub fn disallowed_in_note(c: char) -> bool {
    c != '\n' && c != '\t' && disallowed_in_label(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_input_cannot_turn_a_message_around() {
        assert_eq!(escape_turning("no app `x`"), "no app `x`");
        assert_eq!(
            escape_turning("no app `\u{202E}lave`\n\u{1b}[2J"),
            "no app `\\u{202e}lave`\n\\u{1b}[2J"
        );
    }

    #[test]
    fn a_label_shows_what_it_says_and_draws_over_nothing() {
        for fine in [
            "Alice Martin",
            "שלום",
            "Nguyễn Văn A",
            "👩\u{200D}💻 dev",
            "Müller",
        ] {
            assert_eq!(label_problem(fine, 64), None, "{fine}");
        }
        for (bad, why) in [
            ("", "show"),
            ("\u{200B}", "show"),
            ("a\u{202E}b", "text-direction"),
            ("Z\u{0301}\u{0302}\u{0303}\u{0304}\u{0305}", "stack"),
            ("\u{200B}bob", "shows as nothing"),
            ("bob\u{2060}", "shows as nothing"),
        ] {
            let problem = label_problem(bad, 64).unwrap_or_default();
            assert!(problem.contains(why), "{bad:?}: {problem}");
        }
        assert!(label_problem(&"x".repeat(65), 64).is_some());
    }

    #[test]
    fn labels_refuse_controls_and_bidi_overrides_but_not_rtl_text() {
        for bad in [
            '\0', '\n', '\u{7f}', '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}',
        ] {
            assert!(disallowed_in_label(bad), "{:?}", bad);
        }
        for good in ['a', 'é', 'ش', 'א', '\u{200F}', '\u{200E}', ' ', '€'] {
            assert!(!disallowed_in_label(good), "{:?}", good);
        }
        assert!(disallowed_in_note('\u{1b}') && disallowed_in_note('\r'));
        assert_eq!(visible_chars("\u{200B}\u{200B} \u{FEFF}\u{2060}"), 0);
        assert_eq!(
            visible_chars("\u{3164}\u{3164}\u{2800}\u{FE0F}\u{E0041}\u{0301}"),
            0
        );
        assert_eq!(visible_chars("sunny otter\u{200F}"), 10);
        assert_eq!(visible_chars("שלום"), 4);
        assert_eq!(
            escape_controls("a\nb\u{1b}[2J\tc", &[]),
            "a\\nb\\u{1b}[2J\\tc"
        );
        assert_eq!(
            escape_controls("a\nb\u{1b}[2J\tc", &['\n', '\t']),
            "a\nb\\u{1b}[2J\tc"
        );
        assert_eq!(escape_controls("Hel\u{202E}lo", &[]), "Hel\\u{202e}lo");
        assert!(matches!(
            escape_controls("plain: é", &[]),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(!disallowed_in_note('\n') && !disallowed_in_note('\t'));
        assert!(disallowed_in_note('\u{2028}'));
    }

    #[test]
    fn names_refuse_what_draws_as_nothing_inside_a_word() {
        for bad in [
            "Pub\u{200B}A",
            "Bank\u{202E}evil",
            "line\u{2028}sep",
            "A\u{00AD}B",
            "X\u{E0041}",
        ] {
            assert!(name_problem(bad, 100).is_some(), "{bad:?}");
        }
        assert_eq!(
            name_problem("Pub\u{200B}A", 100).as_deref(),
            Some("must not contain \\u{200b}")
        );
        assert!(name_problem(" City", 100).is_some());
        assert!(name_problem("\u{3164}", 100).is_some());
        assert!(name_problem("Clinic", 5).is_some());
        for bad in [
            "Acme\u{200E}",
            "Pub\u{200D}A",
            "Pub\u{200C}A",
            "A\u{034F}B",
            "A\u{FE0F}",
            "A\u{E0100}",
            "A\u{2800}B",
            "A\u{061C}B",
        ] {
            assert!(name_problem(bad, 100).is_some(), "{bad:?}");
        }
        assert_eq!(name_problem("می\u{200C}خواهم", 100), None);
        // Marks stacked as scripts stack them, not as a pile.
        assert_eq!(name_problem("Vie\u{302}\u{301}t Clinic", 100), None);
        assert_eq!(name_problem("בְּרֵאשִׁית", 100), None);
        assert_eq!(
            name_problem(&format!("Cli{}nic", "\u{33F}".repeat(5)), 100).as_deref(),
            Some("must not stack more than 4 marks on one character")
        );
        for bad in ["..", ".", "a/b", "a%2f", "x?y", "x#y", "back\\slash"] {
            assert!(id_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(id_problem("City Hospital"), None);
        assert!(valid_key("order-42_ä", 64));
        for bad in [
            "",
            "a\u{0}b",
            "a\u{202E}b",
            "a\u{200B}b",
            "a\u{2028}b",
            "a\u{85}b",
        ] {
            assert!(!valid_key(bad, 64), "{bad:?}");
        }
        assert!(!valid_key(&"k".repeat(65), 64));
        assert_eq!(clip("héllo", 2), "h…");
        assert_eq!(clip("héllo", 3), "hé…");
        assert_eq!(clip("héllo", 6), "héllo");
        assert_eq!(prefix("héllo", 0), "");
        assert_eq!(clip_lines("abc\nde\nf", 3), "abc\nde\nf");
        assert_eq!(clip_lines("abcd\nde\nfghij", 3), "abc…\nde\nfgh…");
        let many = "a\n".repeat(MAX_LINES + 10);
        let kept = clip_lines(&many, 3);
        assert_eq!(kept.lines().count(), MAX_LINES + 1);
        assert!(kept.ends_with("… (10 more lines)"), "{kept}");
        assert!(look_alike("City-Hospital", "city hospital"));
        assert!(!look_alike("City Hospital", "City Hospitals"));
        for (a, b) in [
            ("pub", "\u{FF50}\u{FF55}\u{FF42}"),
            ("\u{E9}", "e\u{301}"),
            ("ff", "\u{FB00}"),
            ("I", "\u{2160}"),
            ("acme", "\u{430}cme"),
            ("paypal", "paypa1"),
            ("paypal", "PAYPAL"),
            ("modern", "rnodern"),
            ("bigcorp", "b\u{131}gcorp"),
            ("google", "g00gle"),
            ("Clinic", "CIinic"),
            ("Clinic", "cIinic"),
            ("Clinic", "CLINIC"),
            // Capitals that draw as Latin ones, whose small letters do not.
            ("BANK", "\u{412}\u{410}N\u{41A}"),
            ("HOTEL", "\u{41D}\u{41E}\u{422}\u{415}L"),
            ("MTN", "\u{39C}\u{3A4}\u{39D}"),
            // Accents, composed or not, in either name.
            ("caf\u{E9}", "cafe"),
            ("B\u{E1}nk", "Bank"),
            ("M\u{FC}ller", "Mu\u{308}ller"),
            ("Muller", "M\u{DC}LLER"),
            ("\u{439}\u{43E}\u{434}", "\u{438}\u{43E}\u{434}"),
        ] {
            assert!(look_alike(a, b), "{a:?} {b:?}");
            assert!(look_alike(b, a), "{b:?} {a:?}");
        }
        for (a, b) in [
            ("acme", "acne"),
            ("city", "cite"),
            ("mail", "mall"),
            ("Ali", "All"),
            ("Lima", "Ilma"),
            ("فرع ١٠", "فرع ١"),
            // Other scripts' marks make another word: they stay.
            ("\u{915}\u{92E}\u{932}", "\u{915}\u{941}\u{92E}\u{932}"),
        ] {
            assert!(!look_alike(a, b), "{a:?} {b:?}");
        }
        for good in [
            "City Hospital",
            "مستشفى المدينة",
            "क्\u{200D}ष Clinic",
            "Café ☕",
        ] {
            assert_eq!(name_problem(good, 100), None, "{good:?}");
        }
    }

    #[test]
    fn marks_stack_through_joiners_but_not_past_a_character() {
        assert!(!stacks_marks("e\u{0301}\u{0308}"));
        assert!(!stacks_marks("שָׁלוֹם"));
        // Emoji with their selectors and keycaps, and joined emoji.
        assert!(!stacks_marks(
            "1\u{FE0F}\u{20E3} \u{2764}\u{FE0F} \u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}"
        ));
        assert!(!stacks_marks(&"a\u{0301}\u{0301}".repeat(50)));
        assert!(stacks_marks(&format!("Z{}", "\u{0301}".repeat(5))));
        // Joiners between the marks do not start a new stack.
        assert!(stacks_marks(&format!("Z{}", "\u{0301}\u{200D}".repeat(5))));
        assert!(stacks_marks(&format!(
            "Z{}",
            "\u{0301}\u{200C}".repeat(200)
        )));
    }

    #[test]
    fn tags_are_refused_outside_an_emoji_tag_sequence() {
        let england = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}";
        assert!(!stray_tags(england));
        assert!(!stray_tags(&format!("go {england} go {england}")));
        let (scotland, wales) = (
            "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
            "\u{1F3F4}\u{E0067}\u{E0062}\u{E0077}\u{E006C}\u{E0073}\u{E007F}",
        );
        assert!(!stray_tags(&format!("{scotland}{wales}{england}")));
        assert!(!stray_tags("plain text"));
        for hidden in [
            "hi\u{E0041}\u{E0042}",
            "\u{E0001}",
            "\u{E007F}",
            "\u{1F3F4}\u{E0067}\u{E0062}",
            "\u{1F3F4}\u{E0067}x\u{E007F}",
            "x\u{E0067}\u{E007F}",
            // Words in tags behind a black flag: spaces and capitals are
            // no flag's, nor is a run longer than one.
            "\u{1F3F4}\u{E0070}\u{E0061}\u{E0079}\u{E0020}\u{E0062}\u{E006F}\u{E0062}\u{E007F}",
            "\u{1F3F4}\u{E0050}\u{E0041}\u{E007F}",
            "\u{1F3F4}\u{E0061}\u{E0062}\u{E0063}\u{E0064}\u{E0065}\u{E0066}\u{E0067}\u{E007F}",
            // Flag-shaped, but no flag Unicode recommends: a word in tags
            // behind each of a row of black flags.
            "\u{1F3F4}\u{E0070}\u{E0061}\u{E0073}\u{E0073}\u{E007F}\u{1F3F4}\u{E0031}\u{E0032}\u{E0033}\u{E007F}",
            "\u{1F3F4}\u{E0075}\u{E0073}\u{E0063}\u{E0061}\u{E007F}",
        ] {
            assert!(stray_tags(hidden), "{hidden:?}");
        }
    }

    #[test]
    fn format_characters_marks_and_fillers_show_nothing() {
        for blank in [
            "\u{2066}\u{2069}",
            "\u{061C}",
            "\u{FFF9}\u{FFFA}\u{FFFB}",
            "\u{17B4}\u{17B5}",
            "\u{1BCA0}\u{1BCA3}",
            "\u{1D173}\u{1D17A}",
            "\u{E0100}",
            "\u{20E3}",
            "\u{200E}\u{2060}\u{FE0F}",
            "\u{0301}\u{0301}",
            "\u{3164}\u{2800} \u{00A0}\u{3000}",
            "\u{2065}",
        ] {
            assert_eq!(visible_chars(blank), 0, "{blank:?}");
        }
        assert_eq!(visible_chars("e\u{0301}"), 1);
        assert_eq!(visible_chars("\u{2764}\u{FE0F}"), 1);
        assert_eq!(visible_chars("1\u{FE0F}\u{20E3}"), 1);
        assert_eq!(visible_chars("\u{05E9}\u{05DC}\u{05D5}\u{05DD}"), 4);
        assert_eq!(visible_chars("\u{1F468}\u{200D}\u{1F469}"), 2);
    }
}
