//! ACL rules in Redis's own syntax, as `ACL SETUSER` and ACL files take them
//! (`on >secret ~app:* %R~shared:* &app:* +@all -@dangerous (+get ~x*)`),
//! applied one by one to a [`User`] the way Redis's `ACLSetUser` and
//! `ACLSetSelector` apply them. An invalid rule gets Redis's own words.

use super::selector::Selector;
use super::user::User;
use crate::command::{access, by_full_name, category};

/// Redis's explanation of a rule it refuses (`ACLSetUserStringError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleError {
    UnknownCommand,
    Syntax,
    KeyAfterAll,
    ChannelAfterAll,
    NoSuchPassword,
    BadHash,
    FirstArgOfSubcommand,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuleError::UnknownCommand => "Unknown command or category name in ACL",
            RuleError::Syntax => "Syntax error",
            RuleError::KeyAfterAll => {
                "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
            }
            RuleError::ChannelAfterAll => {
                "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
            }
            RuleError::NoSuchPassword => {
                "The password you are trying to remove from the user does not exist"
            }
            RuleError::BadHash => {
                "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
            }
            RuleError::FirstArgOfSubcommand => {
                "Allowing first-arg of a subcommand is not supported"
            }
        })
    }
}

impl User {
    /// Applies the rules of `text` in order; on failure, the rule and why.
    pub(crate) fn apply(&mut self, text: &str) -> Result<(), (String, RuleError)> {
        for rule in split(text)? {
            apply(self, &rule).map_err(|e| (rule, e))?;
        }
        self.settle();
        Ok(())
    }
}

/// The rules of a string, split on whitespace; a selector `( ... )` is one
/// rule, spaces and all, as ACL files write it.
fn split(text: &str) -> Result<Vec<String>, (String, RuleError)> {
    let mut out = Vec::new();
    let mut open: Option<String> = None;
    for word in text.split_whitespace() {
        match open.as_mut() {
            Some(sel) => {
                sel.push(' ');
                sel.push_str(word);
                if word.ends_with(')') {
                    out.extend(open.take());
                }
            }
            None if word.starts_with('(') && !word.ends_with(')') => open = Some(word.into()),
            None => out.push(word.to_string()),
        }
    }
    match open {
        Some(sel) => Err((sel, RuleError::Syntax)),
        None => Ok(out),
    }
}

/// Applies one rule to the user (Redis's `ACLSetUser`).
fn apply(user: &mut User, op: &str) -> Result<(), RuleError> {
    let lower = op.to_ascii_lowercase();
    match lower.as_str() {
        "on" => user.enabled = true,
        "off" => user.enabled = false,
        // Payload sanitizing is about RESTORE; the backend does it.
        "skip-sanitize-payload" | "sanitize-payload" => {}
        "nopass" => {
            user.nopass = true;
            user.passwords.clear();
        }
        "resetpass" => {
            user.nopass = false;
            user.passwords.clear();
        }
        "clearselectors" => user.selectors.truncate(1),
        "reset" => {
            for rule in [
                "resetpass",
                "resetkeys",
                "resetchannels",
                "off",
                "clearselectors",
                "-@all",
            ] {
                apply(user, rule)?;
            }
        }
        _ => match op.as_bytes().first() {
            Some(b'>') => {
                user.add_password(super::user::hash(&op.as_bytes()[1..]));
            }
            Some(b'#') => user.add_password(parse_hash(&op[1..])?),
            Some(b'<') => forget(user, &super::user::hash(&op.as_bytes()[1..]))?,
            Some(b'!') => forget(user, &parse_hash(&op[1..])?)?,
            Some(b'(') if op.ends_with(')') && op.len() >= 2 => {
                let mut sel = Selector::default();
                for rule in op[1..op.len() - 1].split_whitespace() {
                    apply_selector(&mut sel, rule)?;
                }
                user.selectors.push(sel);
            }
            _ => apply_selector(&mut user.selectors[0], op)?,
        },
    }
    Ok(())
}

fn forget(user: &mut User, h: &[u8; 32]) -> Result<(), RuleError> {
    if user.remove_password(h) {
        Ok(())
    } else {
        Err(RuleError::NoSuchPassword)
    }
}

fn parse_hash(hex: &str) -> Result<[u8; 32], RuleError> {
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(RuleError::BadHash);
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| RuleError::BadHash)?;
    }
    Ok(out)
}

/// Applies one rule to a selector (Redis's `ACLSetSelector`).
pub(crate) fn apply_selector(sel: &mut Selector, op: &str) -> Result<(), RuleError> {
    let lower = op.to_ascii_lowercase();
    match lower.as_str() {
        "allkeys" | "~*" => sel.set_all_keys(true),
        "resetkeys" => sel.set_all_keys(false),
        "allchannels" | "&*" => sel.set_all_channels(true),
        "resetchannels" => sel.set_all_channels(false),
        "allcommands" | "+@all" => sel.all(true),
        "nocommands" | "-@all" => sel.all(false),
        _ => {
            let bytes = op.as_bytes();
            match (bytes.first(), bytes.get(1)) {
                (Some(b'~' | b'%'), _) => {
                    if sel.all_keys {
                        return Err(RuleError::KeyAfterAll);
                    }
                    let (grants, pattern) = key_rule(op)?;
                    sel.add_key_pattern(pattern, grants);
                }
                (Some(b'&'), _) => {
                    if sel.all_channels {
                        return Err(RuleError::ChannelAfterAll);
                    }
                    sel.add_channel(&op[1..]);
                }
                (Some(sign @ (b'+' | b'-')), Some(b'@')) => {
                    let bit = category::bit(&bytes[2..]).ok_or(RuleError::UnknownCommand)?;
                    sel.category(bit, *sign == b'+');
                }
                (Some(b'+'), _) => allow_command(sel, &op[1..])?,
                (Some(b'-'), _) => {
                    let spec = by_full_name(&op[1..]).ok_or(RuleError::UnknownCommand)?;
                    sel.change(spec, false);
                }
                _ => return Err(RuleError::Syntax),
            }
        }
    }
    Ok(())
}

/// `~pattern` (read and write) or `%R~`, `%W~`, `%RW~pattern`.
fn key_rule(op: &str) -> Result<(u8, &str), RuleError> {
    if let Some(pattern) = op.strip_prefix('~') {
        return Ok((access::READ | access::WRITE, pattern));
    }
    let (modes, pattern) = op[1..].split_once('~').ok_or(RuleError::Syntax)?;
    let mut grants = 0;
    for m in modes.bytes() {
        let bit = match m.to_ascii_uppercase() {
            b'R' => access::READ,
            b'W' => access::WRITE,
            _ => return Err(RuleError::Syntax),
        };
        if grants & bit != 0 {
            return Err(RuleError::Syntax);
        }
        grants |= bit;
    }
    if grants == 0 || pattern.is_empty() {
        return Err(RuleError::Syntax);
    }
    Ok((grants, pattern))
}

/// `+cmd`, `+container|sub`, or `+cmd|first-arg` of a command without
/// subcommands (`+select|0`). Split at the last `|`, as Redis does.
fn allow_command(sel: &mut Selector, name: &str) -> Result<(), RuleError> {
    let Some((top, sub)) = name.rsplit_once('|') else {
        let spec = by_full_name(name).ok_or(RuleError::UnknownCommand)?;
        sel.change(spec, true);
        return Ok(());
    };
    let spec = by_full_name(top).ok_or(RuleError::UnknownCommand)?;
    if top.contains('|') {
        return Err(RuleError::FirstArgOfSubcommand);
    }
    if sub.is_empty() {
        return Err(RuleError::Syntax);
    }
    if spec.subcommands.is_empty() {
        sel.allow_first_arg(spec.id, sub);
    } else {
        sel.change(by_full_name(name).ok_or(RuleError::UnknownCommand)?, true);
    }
    Ok(())
}
