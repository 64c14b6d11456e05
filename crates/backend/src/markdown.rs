//! Markdown to HTML for agent replies. Replies are untrusted text (a model can
//! be talked into writing `<script>`), so the HTML is always sanitised with
//! ammonia's allow-list after rendering: no script, event handler or
//! `javascript:` URL survives. Fenced code blocks are highlighted here, on
//! the server (syntect, Sublime Text grammars), as `<span class="hl-…">`
//! runs that the page's stylesheet colours; the sanitiser keeps only class
//! names of that form (and `language-…`), so a reply cannot borrow the
//! page's own classes. The same function renders streaming snapshots and
//! finished replies, so a reply looks the same while and after it streams.

use pulldown_cmark::{html, CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};
use std::sync::LazyLock;
use syntect::{
    html::{ClassStyle, ClassedHTMLGenerator},
    parsing::SyntaxSet,
    util::LinesWithEndings,
};

static SYNTAXES: LazyLock<SyntaxSet> = LazyLock::new(SyntaxSet::load_defaults_newlines);

/// Longer code blocks are shown plain: highlighting is for reading, and a
/// pathological block must not cost a streaming reply its pace.
const MAX_HIGHLIGHT_BYTES: usize = 64 * 1024;

pub fn render(markdown: &str) -> String {
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    opts.insert(Options::ENABLE_TASKLISTS);
    let parser = Parser::new_ext(markdown, opts);
    let mut out = String::with_capacity(markdown.len() * 2);
    html::push_html(&mut out, highlight_code_blocks(parser));
    sanitizer().clean(&out).to_string()
}

fn sanitizer() -> ammonia::Builder<'static> {
    let mut b = ammonia::Builder::default();
    b.link_rel(Some("noopener noreferrer nofollow"))
        .add_tag_attributes("span", &["class"])
        .add_tag_attributes("code", &["class"])
        .attribute_filter(|element, attribute, value| {
            if attribute != "class" || !matches!(element, "span" | "code") {
                return Some(value.into());
            }
            let kept: Vec<&str> = value
                .split_whitespace()
                .filter(|c| c.starts_with("hl-") || c.starts_with("language-"))
                .collect();
            (!kept.is_empty()).then(|| kept.join(" ").into())
        });
    b
}

/// Replace each fenced code block that names a known language by
/// highlighted HTML (escaped by syntect; sanitised with the rest).
fn highlight_code_blocks<'a>(
    events: impl Iterator<Item = Event<'a>>,
) -> impl Iterator<Item = Event<'a>> {
    let mut out = Vec::new();
    let mut block: Option<(String, String)> = None;
    for ev in events {
        match (&mut block, ev) {
            (None, Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(lang)))) => {
                block = Some((
                    lang.split_whitespace().next().unwrap_or("").to_string(),
                    String::new(),
                ));
            }
            (Some((_, code)), Event::Text(t)) => code.push_str(&t),
            (Some((lang, code)), Event::End(TagEnd::CodeBlock)) => {
                out.push(Event::Html(CowStr::from(code_block_html(lang, code))));
                block = None;
            }
            (Some(_), _) => {}
            (None, ev) => out.push(ev),
        }
    }
    // An unclosed fence (a reply still streaming) ends at the end.
    if let Some((lang, code)) = block {
        out.push(Event::Html(CowStr::from(code_block_html(&lang, &code))));
    }
    out.into_iter()
}

fn code_block_html(lang: &str, code: &str) -> String {
    let syntax = (!lang.is_empty() && code.len() <= MAX_HIGHLIGHT_BYTES)
        .then(|| SYNTAXES.find_syntax_by_token(lang))
        .flatten();
    let lang_class = if lang.is_empty() {
        String::new()
    } else {
        format!(" class=\"language-{}\"", escape_attr(lang))
    };
    let body = match syntax {
        Some(syntax) => {
            let mut g = ClassedHTMLGenerator::new_with_class_style(
                syntax,
                &SYNTAXES,
                ClassStyle::SpacedPrefixed { prefix: "hl-" },
            );
            let ok = LinesWithEndings::from(code)
                .all(|line| g.parse_html_for_line_which_includes_newline(line).is_ok());
            if ok {
                g.finalize()
            } else {
                escape_text(code)
            }
        }
        None => escape_text(code),
    };
    format!("<pre><code{lang_class}>{body}</code></pre>\n")
}

fn escape_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn escape_attr(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '#' | '.'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn renders_markdown() {
        let h = render("# Hi\n\n**bold** `code`\n\n- a\n- b");
        assert!(h.contains("<h1>Hi</h1>"));
        assert!(h.contains("<strong>bold</strong>"));
        assert!(h.contains("<li>a</li>"));
    }

    #[test]
    fn strips_script_and_handlers() {
        let h = render(
            "<script>alert(1)</script><img src=x onerror=alert(1)>\n\n[click](javascript:alert(1))",
        );
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("onerror"), "{h}");
        assert!(h.contains("click"), "{h}");
        assert!(!h.contains("href=\"javascript"), "{h}");
    }

    #[test]
    fn code_blocks_are_highlighted_and_escaped() {
        let h = render("```rust\nfn main() { let s = \"<b>\"; }\n```\n");
        assert!(h.contains("<pre><code class=\"language-rust\">"), "{h}");
        assert!(h.contains("class=\"hl-"), "no highlighting: {h}");
        assert!(h.contains("hl-keyword") || h.contains("hl-storage"), "{h}");
        assert!(h.contains("&lt;b&gt;") && !h.contains("<b>"), "{h}");
        // Unknown languages and bare fences stay plain (and escaped).
        let plain = render("```\n<script>x</script>\n```");
        assert!(
            plain.contains("&lt;script&gt;") && !plain.contains("<script"),
            "{plain}"
        );
    }

    #[test]
    fn a_reply_cannot_use_the_pages_classes_or_styles() {
        let h = render("<span class=\"modal hl-x\" style=\"position:fixed\">a</span> <code class=\"btn\">b</code>");
        assert!(h.contains("class=\"hl-x\""), "{h}");
        assert!(
            !h.contains("modal") && !h.contains("btn") && !h.contains("style="),
            "{h}"
        );
    }

    #[test]
    fn an_unfinished_fence_renders_as_code_while_streaming() {
        let h = render("Here:\n\n```python\ndef f(x):\n    return x");
        assert!(h.contains("<pre><code class=\"language-python\">"), "{h}");
        assert!(h.contains("return"), "{h}");
    }
}
