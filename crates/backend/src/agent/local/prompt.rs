//! Text in and out of the local model: the model's own chat template applied
//! to a thread's history (trimmed to what fits its context window), and
//! token ids turned back into text one streamable piece at a time.

use crate::agent::{ChatMessage, Role};
use tokenizers::Tokenizer;

/// Used when a GGUF file carries no `tokenizer.chat_template` (or one we
/// cannot render): ChatML, the format most instruction-tuned models use.
pub const CHATML: &str =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + \
message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ \
'<|im_start|>assistant\n' }}{% endif %}";

/// A compiled chat template with the model's tokenizer.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos_token: String,
    eos_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("the chat template failed: {0}")]
    Template(#[from] minijinja::Error),
    #[error("the tokenizer failed: {0}")]
    Tokenizer(String),
    #[error("the conversation does not fit the model's context window")]
    TooLong,
}

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, minijinja::Error> {
        let mut env = minijinja::Environment::new();
        // Hugging Face templates call `raise_exception` to refuse bad input
        // (say, two user turns in a row); make it a render error.
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        env.add_template_owned("chat", source.to_string())?;
        let template = Self {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        };
        // A template that cannot render an ordinary conversation is found
        // out now, at load time, not in the middle of someone's chat.
        template.render(&[
            ChatMessage {
                role: Role::System,
                content: "s".into(),
            },
            ChatMessage {
                role: Role::User,
                content: "u".into(),
            },
        ])?;
        Ok(template)
    }

    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, minijinja::Error> {
        self.render_with(messages, true)
    }

    /// The conversation's opening (its system prompt) as the template
    /// renders it on its own: the prefix every prompt of this conversation
    /// starts with, whose KV cache a worker keeps.
    pub fn render_opening(&self, messages: &[ChatMessage]) -> Result<String, minijinja::Error> {
        match messages.first() {
            Some(first) if first.role == Role::System => {
                self.render_with(std::slice::from_ref(first), false)
            }
            _ => Ok(String::new()),
        }
    }

    fn render_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, minijinja::Error> {
        self.env.get_template("chat")?.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
    }

    /// The prompt's token ids, at most `budget` of them: the oldest turns
    /// after the system prompt are dropped first; a last message that is too
    /// long on its own keeps its end (where the question usually is).
    pub fn encode_within(
        &self,
        tokenizer: &Tokenizer,
        mut messages: Vec<ChatMessage>,
        budget: usize,
    ) -> Result<Vec<u32>, PromptError> {
        loop {
            let text = self.render(&messages)?;
            let ids = encode(tokenizer, &text)?;
            if ids.len() <= budget {
                return Ok(ids);
            }
            let first_turn = messages.iter().position(|m| m.role != Role::System);
            match first_turn {
                Some(i) if i + 1 < messages.len() => {
                    messages.remove(i);
                }
                Some(i) => {
                    let content = &messages[i].content;
                    let chars = content.chars().count();
                    // Shrink in proportion to the overshoot, and a bit more
                    // so this converges in a couple of rounds.
                    let keep = (chars * budget / ids.len()).saturating_sub(chars / 20 + 8);
                    if keep == 0 || chars <= 1 {
                        return Err(PromptError::TooLong);
                    }
                    messages[i].content = content.chars().skip(chars - keep).collect();
                }
                None => return Err(PromptError::TooLong),
            }
        }
    }
}

pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, PromptError> {
    tokenizer
        .encode(text, false)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| PromptError::Tokenizer(e.to_string()))
}

/// Turns generated token ids into text deltas. A token can end in the middle
/// of a UTF-8 character (byte-level BPE splits emoji and accented letters
/// across tokens), so text is only released once it decodes cleanly.
pub struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    tokens: Vec<u32>,
    /// Start of the window that is re-decoded for each new token (decoding
    /// a token alone can lose the space a neighbour implies).
    prev: usize,
    /// End of what has been released.
    current: usize,
}

impl<'a> TextStream<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self {
            tokenizer,
            tokens: Vec::new(),
            prev: 0,
            current: 0,
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String, PromptError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| PromptError::Tokenizer(e.to_string()))
    }

    /// Add a token; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, PromptError> {
        let before = self.decode(&self.tokens[self.prev..self.current])?;
        self.tokens.push(id);
        let text = self.decode(&self.tokens[self.prev..])?;
        if text.len() > before.len() && !text.ends_with('\u{fffd}') {
            if let Some(new) = text.get(before.len()..) {
                let new = new.to_string();
                self.prev = self.current;
                self.current = self.tokens.len();
                return Ok(Some(new));
            }
        }
        Ok(None)
    }

    /// Whatever is still held back when generation ends.
    pub fn finish(&mut self) -> Result<Option<String>, PromptError> {
        let before = self.decode(&self.tokens[self.prev..self.current])?;
        let text = self.decode(&self.tokens[self.prev..])?;
        self.prev = self.tokens.len();
        self.current = self.tokens.len();
        Ok(text
            .get(before.len()..)
            .filter(|t| !t.is_empty())
            .map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
        }
    }

    #[test]
    fn chatml_renders_the_conversation_and_the_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "", "").unwrap();
        let text = t
            .render(&[msg(Role::System, "be brief"), msg(Role::User, "hi")])
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_template_that_cannot_render_is_refused_at_load() {
        let err = ChatTemplate::new("{{ raise_exception('no system role') }}", "", "")
            .err()
            .expect("refused");
        assert!(err.to_string().contains("no system role"), "{err}");
        assert!(ChatTemplate::new("{% for %}", "", "").is_err());
    }
}
