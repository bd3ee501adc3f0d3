//! One ACL selector: which commands, keys and channels it allows, and the
//! check of one request against it, as Redis's `ACLSelectorCheckCmd` makes it.
//! A user is a root selector and any number of `(...)` ones (`user.rs`).

use crate::command::{CommandSpec, Glob, ID_LIMIT, access, flags};
use crate::protocol::ArgList;

/// Words of a command bitmap: one bit per command and subcommand id.
const WORDS: usize = (ID_LIMIT as usize).div_ceil(64);

/// A key pattern (`~p`, `%R~p`, `%W~p`, `%RW~p`) and what it grants.
#[derive(Debug, Clone)]
pub(super) struct KeyPattern {
    /// As written, without its `~`/`%..~` prefix.
    pub(super) text: String,
    matcher: Matcher,
    /// [`access`] bits: read, write.
    pub(super) grants: u8,
}

/// How a pattern is matched: `prefix*` (the usual `~app:*`) by a prefix
/// test, anything else as a glob.
#[derive(Debug, Clone)]
enum Matcher {
    Prefix(Vec<u8>),
    Glob(Glob),
}

impl Matcher {
    fn new(p: &str) -> Self {
        match p.as_bytes().split_last() {
            Some((b'*', prefix)) if !prefix.iter().any(|c| b"*?[\\".contains(c)) => {
                Matcher::Prefix(prefix.to_vec())
            }
            _ => Matcher::Glob(Glob::compile(p.as_bytes())),
        }
    }

    fn matches(&self, s: &[u8]) -> bool {
        match self {
            Matcher::Prefix(p) => s.starts_with(p),
            Matcher::Glob(g) => g.is_match(s),
        }
    }
}

/// A channel pattern (`&p`).
#[derive(Debug, Clone)]
pub(super) struct ChannelPattern {
    /// As written, without `&`.
    pub(super) text: String,
    matcher: Matcher,
}

/// What one selector allows. A fresh one allows nothing.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    commands: [u64; WORDS],
    /// `allcommands`/`+@all`, until a command is taken away.
    pub(super) all_commands: bool,
    /// `+select|0`: first arguments allowed of commands otherwise not.
    first_args: Vec<(u16, Vec<String>)>,
    /// `allkeys`/`~*`.
    pub(super) all_keys: bool,
    pub(super) keys: Vec<KeyPattern>,
    /// `allchannels`/`&*`.
    pub(super) all_channels: bool,
    pub(super) channels: Vec<ChannelPattern>,
}

/// Why a selector refused a request, ordered as Redis picks the error to
/// report among selectors (a channel over a key over a command).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Denied {
    /// The command is not allowed.
    Command,
    /// The key at this argument is not allowed.
    Key(usize),
    /// The channel at this argument is not allowed.
    Channel(usize),
    /// `SORT ... BY pattern` (`true`) or `GET pattern` (`false`) by a user
    /// without read access to every key: Redis refuses these options
    /// (`-ERR`, not logged), since the keys they read are not arguments.
    SortPattern(bool),
}

impl Default for Selector {
    fn default() -> Self {
        Selector {
            commands: [0; WORDS],
            all_commands: false,
            first_args: Vec::new(),
            all_keys: false,
            keys: Vec::new(),
            all_channels: false,
            channels: Vec::new(),
        }
    }
}

impl Selector {
    /// Whether the command's bit is set.
    pub(super) fn allows(&self, id: u16) -> bool {
        let i = usize::from(id);
        self.commands[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_bit(&mut self, id: u16, on: bool) {
        let i = usize::from(id);
        if on {
            self.commands[i / 64] |= 1 << (i % 64);
        } else {
            self.commands[i / 64] &= !(1 << (i % 64));
            self.all_commands = false;
        }
    }

    /// `+cmd` / `-cmd` (Redis's `ACLChangeSelectorPerm`): the command and all
    /// its subcommands; its allowed first arguments are forgotten.
    pub(super) fn change(&mut self, spec: &CommandSpec, on: bool) {
        self.set_bit(spec.id, on);
        self.first_args.retain(|(id, _)| *id != spec.id);
        for sub in spec.subcommands {
            self.set_bit(sub.id, on);
        }
    }

    /// `+@all` (`on`) or `-@all`.
    pub(super) fn all(&mut self, on: bool) {
        self.commands = [if on { u64::MAX } else { 0 }; WORDS];
        self.all_commands = on;
        self.first_args.clear();
    }

    /// `+@cat` / `-@cat`: every command and subcommand in the category.
    pub(super) fn category(&mut self, bit: u32, on: bool) {
        for spec in crate::command::every() {
            if spec.acl & bit != 0 {
                self.change(spec, on);
            }
            for sub in spec.subcommands {
                if sub.acl & bit != 0 {
                    self.change(sub, on);
                }
            }
        }
    }

    /// `+cmd|arg` of a command without subcommands.
    pub(super) fn allow_first_arg(&mut self, id: u16, arg: &str) {
        match self.first_args.iter_mut().find(|(i, _)| *i == id) {
            Some((_, args)) => {
                if !args.iter().any(|a| a.eq_ignore_ascii_case(arg)) {
                    args.push(arg.to_string());
                }
            }
            None => self.first_args.push((id, vec![arg.to_string()])),
        }
    }

    /// `~p`, `%R~p`...: adds the pattern, or its permissions to the same one.
    pub(super) fn add_key_pattern(&mut self, text: &str, grants: u8) {
        match self.keys.iter_mut().find(|k| k.text == text) {
            Some(k) => k.grants |= grants,
            None => self.keys.push(KeyPattern {
                text: text.to_string(),
                matcher: Matcher::new(text),
                grants,
            }),
        }
        self.all_keys = false;
    }

    /// `&p`.
    pub(super) fn add_channel(&mut self, text: &str) {
        if !self.channels.iter().any(|c| c.text == text) {
            self.channels.push(ChannelPattern {
                text: text.to_string(),
                matcher: Matcher::new(text),
            });
        }
        self.all_channels = false;
    }

    /// `allkeys` (`on`) or `resetkeys`.
    pub(super) fn set_all_keys(&mut self, on: bool) {
        self.all_keys = on;
        self.keys.clear();
    }

    /// `allchannels` (`on`) or `resetchannels`.
    pub(super) fn set_all_channels(&mut self, on: bool) {
        self.all_channels = on;
        self.channels.clear();
    }

    /// Checks one request: `spec` is its command (a subcommand's own spec);
    /// `keys_need` overrides what its keys need (a lock script the proxy
    /// knows reads only). Nothing is allocated: keys and channels are read
    /// off the arguments as they are checked.
    pub(super) fn check<A: ArgList + ?Sized>(
        &self,
        spec: &CommandSpec,
        args: &A,
        keys_need: Option<u8>,
    ) -> Result<(), Denied> {
        if !self.all_commands && !spec.has(flags::NO_AUTH) && !self.allows(spec.id) {
            let idx = if spec.name.contains('|') { 2 } else { 1 };
            let allowed = args.get(idx).is_some_and(|first| {
                self.first_args
                    .iter()
                    .find(|(id, _)| *id == spec.id)
                    .is_some_and(|(_, v)| {
                        v.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(first))
                    })
            });
            if !allowed {
                return Err(Denied::Command);
            }
        }
        if !self.all_keys && !spec.key_specs.is_empty() {
            let mut refused = None;
            crate::command::for_each_key_access(spec, args, |i, need| {
                let need = keys_need.unwrap_or(need);
                if refused.is_none() {
                    let key = args.arg(i);
                    let granted = self
                        .keys
                        .iter()
                        .any(|k| k.grants & need == need && k.matcher.matches(key));
                    if !granted {
                        refused = Some(i);
                    }
                }
            });
            if let Some(i) = refused {
                return Err(Denied::Key(i));
            }
        }
        if !self.all_channels {
            let (from, pattern) = match spec.name {
                "publish" | "spublish" => (1..args.len().min(2), false),
                "subscribe" | "ssubscribe" => (1..args.len(), false),
                "psubscribe" => (1..args.len(), true),
                _ => (0..0, false),
            };
            for i in from {
                let ch = args.arg(i);
                // A pattern subscription needs the very same pattern; a
                // channel needs one that matches it.
                let granted = self.channels.iter().any(|c| {
                    if pattern {
                        c.text.as_bytes() == ch
                    } else {
                        c.matcher.matches(ch)
                    }
                });
                if !granted {
                    return Err(Denied::Channel(i));
                }
            }
        }
        Ok(())
    }

    /// Whether the selector may read any key (`allkeys`, or a `*` pattern
    /// with read permission): what `SORT`'s `BY` and `GET` patterns need.
    pub(super) fn reads_every_key(&self) -> bool {
        self.all_keys
            || self
                .keys
                .iter()
                .any(|k| k.text == "*" && k.grants & access::READ != 0)
    }

    /// Whether the selector allows every command and every key, so only a
    /// pub/sub command's channels can be refused.
    pub(super) fn all_but_channels(&self) -> bool {
        self.all_commands && self.all_keys
    }
}

/// Whether a command (by its name) publishes or subscribes: only those need
/// looking at for a user who may run anything on any key. By length first,
/// so `SET` and `GET` cost a compare or two.
pub(super) fn may_name_channels(name: &[u8]) -> bool {
    let is = |w: &[u8]| name.eq_ignore_ascii_case(w);
    match name.len() {
        7 => is(b"publish"),
        8 => is(b"spublish"),
        9 => is(b"subscribe"),
        10 => is(b"psubscribe") || is(b"ssubscribe"),
        _ => false,
    }
}
