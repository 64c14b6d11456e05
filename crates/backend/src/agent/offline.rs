//! The rule-based offline assistant: the fallback when no model is there
//! (the default local model's file is missing), so `confab up` still gives a
//! working chat. It is not a language model and says so; it answers
//! greetings and questions about itself, does arithmetic, shows off Markdown,
//! and explains how to get a real model. Replies stream token by token like
//! a real provider's.

use super::{AgentInfo, ChatMessage, Provider, ProviderError, Role, TokenStream};
use async_trait::async_trait;
use futures::StreamExt;
use std::{path::Path, time::Duration};

pub struct Offline {
    token_delay: Duration,
    notice: Option<String>,
}

impl Offline {
    pub fn new(token_delay: Duration) -> Self {
        Self {
            token_delay,
            notice: None,
        }
    }

    /// Standing in for the default local model, whose file is not at `path`:
    /// the chat page says how to get it.
    pub fn missing_model(mut self, path: &Path) -> Self {
        self.notice = Some(format!(
            "No language model is installed, so replies come from Confab's rule-based offline \
             assistant. Get the default model (SmolLM2-135M-Instruct, 98 MB, once) with \
             ./scripts/deps.sh --model (./scripts/up.sh does it for you) so it lands in {}, or set \
             CONFAB_LOCAL_MODEL=/path/model.gguf or CONFAB_LLM_BASE_URL; then restart Confab.",
            path.display()
        ));
        self
    }
}

#[async_trait]
impl Provider for Offline {
    fn info(&self) -> AgentInfo {
        AgentInfo {
            kind: "offline",
            model: "confab-offline-assistant".into(),
            offline: true,
            notice: self.notice.clone(),
        }
    }

    async fn stream(&self, messages: Vec<ChatMessage>) -> Result<TokenStream, ProviderError> {
        let question = messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let turns = messages.iter().filter(|m| m.role == Role::User).count();
        let reply = answer(&question, turns);
        let delay = self.token_delay;
        let tokens = tokenize(&reply);
        Ok(futures::stream::iter(tokens)
            .then(move |t| async move {
                if !delay.is_zero() {
                    confab_core::clock::sleep(delay).await;
                }
                Ok(t)
            })
            .boxed())
    }
}

/// Split into word-sized pieces that keep their whitespace, like model tokens.
fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        cur.push(ch);
        if ch.is_whitespace() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

const CONNECT_HINT: &str = "To chat with a real model, fetch Confab's default local model once \
with `./scripts/deps.sh --model` (`./scripts/up.sh` does it), or choose a GGUF file with \
`CONFAB_LOCAL_MODEL`, or start Confab with `CONFAB_LLM_BASE_URL` (for example \
`https://api.openai.com/v1`, or `http://localhost:11434/v1` for Ollama), `CONFAB_LLM_API_KEY` \
and `CONFAB_LLM_MODEL`.";

pub fn answer(question: &str, turns: usize) -> String {
    let q = question.trim();
    let lower = q.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |w: &str| words.contains(&w);

    if let Some(value) = arithmetic(q) {
        return format!(
            "**{}** = **{}**",
            q.trim_end_matches(['=', '?', ' ']),
            format_number(value)
        );
    }
    if words.len() <= 4
        && (has("hi") || has("hello") || has("hey") || has("hallo") || lower.starts_with("good "))
    {
        let again = if turns > 1 { " again" } else { "" };
        return format!(
            "Hello{again}! 👋 I'm **Confab's built-in offline assistant**. I run inside Confab itself, \
             with no network and no language model, so I can only do simple things: arithmetic, a \
             Markdown demo, and explaining how Confab works.\n\nAsk me `what can you do?` or try `12 * (3 + 4)`.\n\n{CONNECT_HINT}"
        );
    }
    if has("help")
        || lower.contains("what can you do")
        || lower.contains("who are you")
        || has("offline")
    {
        return format!(
            "I'm the **offline assistant** that ships with Confab. Here is what I can do:\n\n\
             | Ask me | I answer |\n|---|---|\n\
             | `2 + 2 * 10` | arithmetic with `+ - * / ^` and parentheses |\n\
             | `markdown` | a demo of how replies are rendered |\n\
             | `help` | this table |\n\n\
             Everything else gets an honest \"I can't do that offline\". Your chats are still saved, \
             streamed and exportable exactly as with a real model.\n\n{CONNECT_HINT}"
        );
    }
    if has("markdown") || has("demo") || has("format") {
        return "Replies are **Markdown**, rendered safely:\n\n\
                1. *emphasis*, **bold**, ~~strike~~ and `inline code`\n\
                2. lists and tables\n\
                3. code blocks:\n\n\
                ```rust\nfn main() {\n    println!(\"hello from Confab\");\n}\n```\n\n\
                > Raw HTML such as `<script>` from a model is removed before it reaches your browser."
            .to_string();
    }
    let count = q.split_whitespace().count();
    format!(
        "I'm Confab's offline assistant, so I can't really answer that — I'm not a language model.\n\n\
         > {}\n\n\
         (That's {count} word{} I saved in this thread; it will be there when a real model is connected.)\n\n\
         {CONNECT_HINT}",
        quote(q),
        if count == 1 { "" } else { "s" }
    )
}

fn quote(q: &str) -> String {
    let short: String = q.chars().take(280).collect();
    short.replace('\n', "\n> ")
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Evaluate `+ - * / ^` and parentheses, if the whole text is an expression
/// with at least one operator.
pub fn arithmetic(text: &str) -> Option<f64> {
    let t: String = text
        .trim()
        .trim_end_matches(['=', '?'])
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if t.is_empty()
        || !t.chars().any(|c| "+-*/^".contains(c))
        || !t.chars().any(|c| c.is_ascii_digit())
    {
        return None;
    }
    if !t
        .chars()
        .all(|c| c.is_ascii_digit() || "+-*/^().".contains(c))
    {
        return None;
    }
    let mut p = Parser {
        s: t.as_bytes(),
        i: 0,
    };
    let v = p.expr()?;
    (p.i == p.s.len() && v.is_finite()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn expr(&mut self) -> Option<f64> {
        let mut v = self.term()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            let r = self.term()?;
            v = if op == b'+' { v + r } else { v - r };
        }
        Some(v)
    }
    fn term(&mut self) -> Option<f64> {
        let mut v = self.power()?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.i += 1;
            let r = self.power()?;
            v = if op == b'*' { v * r } else { v / r };
        }
        Some(v)
    }
    fn power(&mut self) -> Option<f64> {
        let base = self.unary()?;
        if self.peek() == Some(b'^') {
            self.i += 1;
            let exp = self.power()?;
            return Some(base.powf(exp));
        }
        Some(base)
    }
    fn unary(&mut self) -> Option<f64> {
        if self.peek() == Some(b'-') {
            self.i += 1;
            return Some(-self.unary()?);
        }
        self.atom()
    }
    fn atom(&mut self) -> Option<f64> {
        if self.peek() == Some(b'(') {
            self.i += 1;
            let v = self.expr()?;
            if self.peek() != Some(b')') {
                return None;
            }
            self.i += 1;
            return Some(v);
        }
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'.') {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_works() {
        assert_eq!(arithmetic("12 * (3 + 4)"), Some(84.0));
        assert_eq!(arithmetic("2^10 - 24 ="), Some(1000.0));
        assert_eq!(arithmetic("-3 + 1.5"), Some(-1.5));
        assert_eq!(arithmetic("hello"), None);
        assert_eq!(arithmetic("42"), None);
        assert_eq!(arithmetic("(1+2"), None);
        assert!(answer("1/4", 1).contains("0.25"));
    }

    #[test]
    fn answers_honestly() {
        assert!(answer("hi", 1).contains("offline assistant"));
        assert!(answer("help", 1).contains("CONFAB_LLM_BASE_URL"));
        assert!(answer("what is the capital of France?", 1).contains("can't really answer"));
    }

    #[test]
    fn tokens_rebuild_the_text() {
        let text = answer("markdown", 1);
        assert_eq!(tokenize(&text).concat(), text);
        assert!(tokenize(&text).len() > 10);
    }
}
