//! Chat prompts: the formats a model was tuned on, recognised from
//! `tokenizer.chat_template`.
//!
//! Like llama.cpp, we do not run Jinja: a template is recognised by its marker strings (or
//! given by name) and rendered by hand. The rendered text holds special tokens as text
//! (`<|eot_id|>`), so it must be encoded with special-token parsing on; BOS is left to the
//! encoder (`tokenizer.ggml.add_bos_token`), never written into the text.

use alloc::format;
use alloc::string::String;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFormat {
    /// BitNet b1.58 2B4T: `Role: content<|eot_id|>`..., then `Assistant: `.
    Bitnet,
    /// Llama 3: `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`.
    Llama3,
    /// ChatML: `<|im_start|>role\ncontent<|im_end|>\n`.
    ChatMl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    fn lower(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    fn capitalized(self) -> &'static str {
        match self {
            Role::System => "System",
            Role::User => "User",
            Role::Assistant => "Assistant",
        }
    }
}

impl ChatFormat {
    pub const NAMES: [&'static str; 3] = ["bitnet", "llama3", "chatml"];

    pub fn name(self) -> &'static str {
        match self {
            ChatFormat::Bitnet => "bitnet",
            ChatFormat::Llama3 => "llama3",
            ChatFormat::ChatMl => "chatml",
        }
    }

    /// Recognises a `tokenizer.chat_template` (a Jinja template, or one of [`Self::NAMES`]).
    pub fn detect(template: &str) -> Result<ChatFormat, String> {
        let has = |s: &str| template.contains(s);
        let format = match template.trim() {
            "bitnet" => ChatFormat::Bitnet,
            "llama3" => ChatFormat::Llama3,
            "chatml" => ChatFormat::ChatMl,
            _ if has("<|start_header_id|>") && has("<|end_header_id|>") => ChatFormat::Llama3,
            _ if has("<|im_start|>") => ChatFormat::ChatMl,
            _ if has("Assistant: ") && has("<|eot_id|>") => ChatFormat::Bitnet,
            _ if Self::is_older_bitnet(template) => ChatFormat::Bitnet,
            _ => {
                let head: String = template.chars().take(120).collect();
                return Err(format!(
                    "tokenizer.chat_template is not a format this program supports ({}): {head:?}...",
                    Self::NAMES.join(", ")
                ));
            }
        };
        Ok(format)
    }

    /// A BitNet b1.58 template that names roles as `Role: ` (capitalised role name, or the
    /// literal prefixes) but does not close turns with `<|eot_id|>`, as templates written
    /// before the 2B4T release did. The model was tuned on `Role: text<|eot_id|>` (the
    /// example transformers' BitNet documentation gives), so that is what chat renders.
    pub fn is_older_bitnet(template: &str) -> bool {
        let has = |s: &str| template.contains(s);
        let role_prefix = (has("capitalize") && has("': '"))
            || (has("'User: '") || has("\"User: \"")) && has("Assistant: ");
        role_prefix && !has("<|eot_id|>") && !has("<|start_header_id|>") && !has("<|im_start|>")
    }

    /// Appends one message, in the format's words.
    pub fn message(self, role: Role, content: &str, out: &mut String) {
        match self {
            ChatFormat::Bitnet => {
                out.push_str(role.capitalized());
                out.push_str(": ");
                out.push_str(content.trim());
                out.push_str("<|eot_id|>");
            }
            ChatFormat::Llama3 => {
                out.push_str("<|start_header_id|>");
                out.push_str(role.lower());
                out.push_str("<|end_header_id|>\n\n");
                out.push_str(content.trim());
                out.push_str("<|eot_id|>");
            }
            ChatFormat::ChatMl => {
                out.push_str("<|im_start|>");
                out.push_str(role.lower());
                out.push('\n');
                out.push_str(content);
                out.push_str("<|im_end|>\n");
            }
        }
    }

    /// Appends the start of the assistant's turn, after which the model writes its reply.
    pub fn assistant_prefix(self, out: &mut String) {
        out.push_str(match self {
            ChatFormat::Bitnet => "Assistant: ",
            ChatFormat::Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
            ChatFormat::ChatMl => "<|im_start|>assistant\n",
        });
    }

    /// What closes a message: the model's reply ends with it (its first token is the one
    /// generation stops at), and a reply cut short must be closed with it.
    pub fn end_of_turn(self) -> &'static str {
        match self {
            ChatFormat::Bitnet | ChatFormat::Llama3 => "<|eot_id|>",
            ChatFormat::ChatMl => "<|im_end|>\n",
        }
    }

    /// One user turn (after an optional system message), ready for the reply.
    pub fn prompt(self, system: Option<&str>, user: &str) -> String {
        let mut out = String::new();
        if let Some(s) = system {
            self.message(Role::System, s, &mut out);
        }
        self.message(Role::User, user, &mut out);
        self.assistant_prefix(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A Jinja template of BitNet b1.58 2B4T's shape: capitalised role, ': ', trimmed
    // content, '<|eot_id|>', then 'Assistant: ' for the reply.
    const BITNET_TEMPLATE: &str = "{% for message in messages %}{% set content = message['role'] | capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";

    #[test]
    fn bitnet_prompt() {
        let f = ChatFormat::detect(BITNET_TEMPLATE).unwrap();
        assert_eq!(f, ChatFormat::Bitnet);
        assert_eq!(
            f.prompt(Some("Be brief."), "  What is 2+2?\n"),
            "System: Be brief.<|eot_id|>User: What is 2+2?<|eot_id|>Assistant: "
        );
    }

    #[test]
    fn an_older_bitnet_template_renders_the_2b4t_format() {
        // Role prefixes, turns closed by eos_token rather than <|eot_id|>.
        for t in [
            "{% for message in messages %}{{ message['role'] | capitalize + ': ' + message['content'] + eos_token }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}",
            "{% for m in messages %}{% if m['role'] == 'user' %}{{ 'User: ' + m['content'] + '\\n' }}{% else %}{{ 'Assistant: ' + m['content'] + eos_token }}{% endif %}{% endfor %}",
        ] {
            assert!(ChatFormat::is_older_bitnet(t), "{t}");
            let f = ChatFormat::detect(t).unwrap();
            assert_eq!(f.prompt(None, "Hi"), "User: Hi<|eot_id|>Assistant: ");
        }
        assert!(
            !ChatFormat::is_older_bitnet(BITNET_TEMPLATE),
            "the current one is no quirk"
        );
        assert!(!ChatFormat::is_older_bitnet(
            "{{ message['role'] | capitalize }}"
        ));
    }

    #[test]
    fn llama3_and_chatml_prompts() {
        assert_eq!(
            ChatFormat::Llama3.prompt(None, "Hi"),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(
            ChatFormat::detect("{{'<|im_start|>' + message['role']}}").unwrap(),
            ChatFormat::ChatMl
        );
        assert_eq!(
            ChatFormat::ChatMl.prompt(Some("s"), "u"),
            "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn unknown_template_is_a_clear_error() {
        let e = ChatFormat::detect("{{ messages }} [INST]").unwrap_err();
        assert!(
            e.contains("tokenizer.chat_template") && e.contains("bitnet"),
            "{e}"
        );
    }
}
