//! The permission model: what one permission is ([`Perm`]), a set of them
//! ([`Perms`], stored as names in `account_types.perms`), and a logged-in
//! [`Session`] that carries its account's set and checks it. Services,
//! `accounts` (which manages types) and `auth` (which makes sessions) all
//! import it; it may import only `model`, `error` and `db`.

use crate::db::{accounts as q, DbError};
use crate::error::{Error, Result};
use crate::model::{CatalogId, UserId};

/// One permission. Checked in the service layer for every endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Perm {
    /// List catalogs and files, thumbnails, downloads, help info.
    Browse,
    /// Make share links of what the user can see.
    Share,
    /// Upload, create catalogs, edit and delete what the user uploaded or
    /// created.
    Upload,
    /// Edit and delete anything the user can see.
    Moderate,
    /// Users, account types, registration tokens, access keys.
    Accounts,
    /// Libraries and who sees them.
    Libraries,
    /// Start backups and see their state.
    Backup,
    /// List and revoke share links.
    Shares,
}

pub(crate) const ALL_PERMS: [(Perm, &str); 8] = [
    (Perm::Browse, "browse"),
    (Perm::Share, "share"),
    (Perm::Upload, "upload"),
    (Perm::Moderate, "moderate"),
    (Perm::Accounts, "accounts"),
    (Perm::Libraries, "libraries"),
    (Perm::Backup, "backup"),
    (Perm::Shares, "shares"),
];

impl Perm {
    fn bit(self) -> u16 {
        1 << ALL_PERMS
            .iter()
            .position(|(p, _)| *p == self)
            .expect("listed")
    }

    pub(crate) fn name(self) -> &'static str {
        ALL_PERMS
            .iter()
            .find(|(p, _)| *p == self)
            .expect("listed")
            .1
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Perms(u16);

impl Perms {
    pub(crate) const ALL: Perms = Perms(0xff);

    pub(crate) fn has(self, p: Perm) -> bool {
        self.0 & p.bit() != 0
    }

    pub(crate) fn with(self, p: Perm) -> Perms {
        Perms(self.0 | p.bit())
    }

    /// The permissions of `self` that `other` lacks.
    pub(crate) fn minus(self, other: Perms) -> Perms {
        Perms(self.0 & !other.0)
    }

    /// Space- or comma-separated names; unknown names are an error.
    pub(crate) fn parse(s: &str) -> std::result::Result<Perms, String> {
        let mut out = Perms::default();
        for name in s.split([' ', ',']).map(str::trim).filter(|n| !n.is_empty()) {
            let p = ALL_PERMS
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(name))
                .map(|(p, _)| *p)
                .ok_or_else(|| {
                    format!(
                        "unknown permission {name:?} (known: {})",
                        ALL_PERMS.map(|(_, n)| n).join(", ")
                    )
                })?;
            out = out.with(p);
        }
        Ok(out)
    }

    pub(crate) fn names(self) -> Vec<&'static str> {
        ALL_PERMS
            .iter()
            .filter(|(p, _)| self.has(*p))
            .map(|(_, n)| *n)
            .collect()
    }

    /// The stored form: names separated by one space.
    pub(crate) fn to_db(self) -> String {
        self.names().join(" ")
    }
}

/// The permissions of type `id` (none when the type is gone, or when its
/// stored names do not parse). Blocking.
pub(crate) fn of_type(c: &rusqlite::Connection, id: i64) -> Result<Perms, DbError> {
    Ok(q::type_perms(c, id)?
        .map(|p| Perms::parse(&p).unwrap_or_default())
        .unwrap_or_default())
}

/// A logged-in session (cookie or access key) as handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub user_id: UserId,
    /// Root catalogs this user may access (looked up at login, refreshed
    /// when access changes).
    pub roots: Vec<CatalogId>,
    /// What the account's type allows (refreshed when accounts change).
    pub perms: Perms,
    /// The access key used, when the caller sent one instead of a cookie.
    pub key_id: Option<i64>,
}

impl Session {
    pub(crate) fn can(&self, p: Perm) -> bool {
        self.perms.has(p)
    }

    /// −10002 unless the account's type has `p`.
    pub(crate) fn require(&self, p: Perm) -> Result<()> {
        if self.can(p) {
            Ok(())
        } else {
            Err(Error::NoPermission(format!(
                "your account type does not allow this (it needs the `{}` permission; ask an admin)",
                p.name()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_parse_and_print() {
        let p = Perms::parse("browse, upload share").unwrap();
        assert!(p.has(Perm::Browse) && p.has(Perm::Upload) && p.has(Perm::Share));
        assert!(!p.has(Perm::Moderate));
        assert_eq!(p.to_db(), "browse share upload");
        assert!(Perms::parse("browse fly").unwrap_err().contains("fly"));
        assert_eq!(Perms::ALL.names().len(), ALL_PERMS.len());
    }
}
