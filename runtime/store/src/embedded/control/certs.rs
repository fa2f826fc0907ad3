//! The apps' TLS certificates in the control database: one row per domain, whose primary
//! key is also a foreign key to `domains`, so a certificate exists only for a domain an
//! app has and goes with it (`ON DELETE CASCADE` from the domain, and from the app).
//! Each change is one transaction that also moves the app's revision, like drains.

use super::{ControlDb, EmbeddedControl, bump_revision, parse_time, stored};
use crate::certs::{CertSource, CertStore, MAX_CERTS_PER_APP, StoredCert, over_budget};
use crate::error::{Result, StoreError};
use async_trait::async_trait;
use rusqlite::{Connection, params};
use wdeploy_core::{AppName, Domain};

/// Made by `ControlDb::open` on a database of any age (an older one gains the table).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS certs (
    domain TEXT PRIMARY KEY REFERENCES domains(domain) ON DELETE CASCADE,
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    source TEXT NOT NULL,
    chain_pem TEXT NOT NULL,
    key_pem TEXT NOT NULL,
    issuer TEXT NOT NULL,
    not_after TEXT,
    updated_at TEXT NOT NULL,
    acme_error TEXT
);
CREATE INDEX IF NOT EXISTS certs_by_app ON certs (app);
";

const COLUMNS: &str =
    "domain, app, source, chain_pem, key_pem, issuer, not_after, updated_at, acme_error";

impl ControlDb {
    pub fn put_cert(&self, cert: StoredCert) -> Result<()> {
        self.app(&cert.app)?;
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let has_domain = tx
            .prepare_cached("SELECT 1 FROM domains WHERE domain = ?1 AND app = ?2")?
            .exists(params![cert.domain.as_str(), cert.app.as_str()])?;
        if !has_domain {
            return Err(StoreError::NotFound(format!(
                "domain {} of {}",
                cert.domain, cert.app
            )));
        }
        let replacing = tx
            .prepare_cached("SELECT 1 FROM certs WHERE domain = ?1")?
            .exists(params![cert.domain.as_str()])?;
        let count: i64 = tx.query_row(
            "SELECT COUNT(*) FROM certs WHERE app = ?1",
            params![cert.app.as_str()],
            |r| r.get(0),
        )?;
        if !replacing && count as usize >= MAX_CERTS_PER_APP {
            return Err(over_budget(&cert.app));
        }
        tx.execute(
            &format!(
                "INSERT OR REPLACE INTO certs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                cert.domain.as_str(),
                cert.app.as_str(),
                cert.source.as_str(),
                cert.chain_pem,
                cert.key_pem,
                cert.issuer,
                cert.not_after.map(|t| t.to_rfc3339()),
                cert.updated_at.to_rfc3339(),
                cert.acme_error,
            ],
        )?;
        bump_revision(&tx, &cert.app)?;
        tx.commit()?;
        Ok(())
    }

    pub fn remove_cert(&self, app: &AppName, domain: &Domain) -> Result<StoredCert> {
        self.app(app)?;
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let cert = read_certs(
            &tx,
            "WHERE domain = ?1 AND app = ?2",
            params![domain.as_str(), app.as_str()],
        )?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("certificate of {domain} in {app}")))?;
        tx.execute(
            "DELETE FROM certs WHERE domain = ?1",
            params![domain.as_str()],
        )?;
        bump_revision(&tx, app)?;
        tx.commit()?;
        Ok(cert)
    }

    pub fn certs(&self, app: &AppName) -> Result<Vec<StoredCert>> {
        self.app(app)?;
        read_certs(&self.conn.lock(), "WHERE app = ?1", params![app.as_str()])
    }

    pub fn all_certs(&self) -> Result<Vec<StoredCert>> {
        read_certs(&self.conn.lock(), "", params![])
    }
}

/// The certificates `filter` selects, by domain.
fn read_certs(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<StoredCert>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM certs {filter} ORDER BY domain"
    ))?;
    let rows = stmt.query_map(args, |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, String>(7)?,
            r.get::<_, Option<String>>(8)?,
        ))
    })?;
    let mut certs = Vec::new();
    for row in rows {
        let (domain, app, source, chain_pem, key_pem, issuer, not_after, updated, acme_error) =
            row?;
        certs.push(StoredCert {
            domain: stored(&domain)?,
            app: stored(&app)?,
            source: CertSource::parse(&source).ok_or_else(|| {
                StoreError::Backend(format!("stored certificate source `{source}` is unknown"))
            })?,
            chain_pem,
            key_pem,
            issuer,
            not_after: not_after.as_deref().map(parse_time),
            updated_at: parse_time(&updated),
            acme_error,
        });
    }
    Ok(certs)
}

/// Whether the database has the certificates table (for the migration test).
#[cfg(test)]
fn has_certs_table(conn: &Connection) -> bool {
    conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'certs'")
        .and_then(|mut stmt| stmt.exists([]))
        .unwrap_or(false)
}

#[async_trait]
impl CertStore for EmbeddedControl {
    async fn put_cert(&self, cert: StoredCert) -> Result<()> {
        self.blocking(move |db| db.put_cert(cert)).await
    }
    async fn remove_cert(&self, app: &AppName, domain: &Domain) -> Result<StoredCert> {
        let (app, domain) = (app.clone(), domain.clone());
        self.blocking(move |db| db.remove_cert(&app, &domain)).await
    }
    async fn certs(&self, app: &AppName) -> Result<Vec<StoredCert>> {
        let app = app.clone();
        self.blocking(move |db| db.certs(&app)).await
    }
    async fn all_certs(&self) -> Result<Vec<StoredCert>> {
        self.blocking(|db| db.all_certs()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::testing::manual;

    #[test]
    fn a_cert_needs_its_domain_is_replaced_and_moves_the_revision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (a, b): (AppName, AppName) = ("alpha".parse().unwrap(), "beta".parse().unwrap());
        let www: Domain = "www.example.com".parse().unwrap();
        let api: Domain = "api.example.com".parse().unwrap();
        {
            let db = ControlDb::open(&path).unwrap();
            db.create_app(&a).unwrap();
            db.create_app(&b).unwrap();
            db.add_domain(&a, &www).unwrap();
            db.add_domain(&a, &api).unwrap();
            // Not the app's domain (nor anyone's): refused, nothing stored.
            let theirs = db.put_cert(manual(&b, &www, "CA"));
            assert!(matches!(theirs, Err(StoreError::NotFound(_))), "{theirs:?}");
            let nobody = manual(&a, &"x.example.com".parse().unwrap(), "CA");
            assert!(matches!(db.put_cert(nobody), Err(StoreError::NotFound(_))));
            assert!(db.all_certs().unwrap().is_empty());

            let revision = || db.app(&a).unwrap().revision.unwrap();
            let before = revision();
            db.put_cert(StoredCert::ordering(&a, &www)).unwrap();
            assert!(
                revision() > before,
                "a certificate change moves the revision"
            );
            // certs:add on an ACME domain replaces it.
            db.put_cert(manual(&a, &www, "Test CA")).unwrap();
            db.put_cert(manual(&a, &api, "Other CA")).unwrap();
        }
        // Durable, read back after reopening, by domain.
        let db = ControlDb::open(&path).unwrap();
        let certs = db.certs(&a).unwrap();
        assert_eq!(
            certs,
            vec![manual(&a, &api, "Other CA"), manual(&a, &www, "Test CA")]
        );
        assert_eq!(db.all_certs().unwrap(), certs);
        assert!(db.certs(&b).unwrap().is_empty());
        assert!(matches!(
            db.certs(&"gamma".parse().unwrap()),
            Err(StoreError::NotFound(_))
        ));

        // Removed by domain, once; only by its app.
        assert!(matches!(
            db.remove_cert(&b, &www),
            Err(StoreError::NotFound(_))
        ));
        let before = db.app(&a).unwrap().revision;
        assert_eq!(db.remove_cert(&a, &www).unwrap().issuer, "Test CA");
        assert!(db.app(&a).unwrap().revision > before);
        assert!(matches!(
            db.remove_cert(&a, &www),
            Err(StoreError::NotFound(_))
        ));
        let ordering = db.put_cert(StoredCert::ordering(&a, &www));
        ordering.unwrap();
        let www_cert = &db.certs(&a).unwrap()[1];
        assert_eq!(
            (www_cert.source, www_cert.not_after, www_cert.is_issued()),
            (CertSource::Acme, None, false)
        );

        // A removed domain takes its certificate; a destroyed app all of them.
        db.remove_domain(&a, &www).unwrap();
        assert_eq!(db.certs(&a).unwrap(), vec![manual(&a, &api, "Other CA")]);
        db.add_domain(&a, &www).unwrap();
        assert_eq!(
            db.certs(&a).unwrap().len(),
            1,
            "a domain added again has none"
        );
        db.delete_app(&a).unwrap();
        assert!(db.all_certs().unwrap().is_empty());
        // The domain is free: another app adds it and its own certificate.
        db.add_domain(&b, &api).unwrap();
        db.put_cert(manual(&b, &api, "B CA")).unwrap();
        assert_eq!(db.all_certs().unwrap(), vec![manual(&b, &api, "B CA")]);
    }

    #[test]
    fn an_app_has_at_most_max_certs_while_its_neighbour_adds_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(&dir.path().join("state.db")).unwrap();
        let (greedy, neighbour): (AppName, AppName) =
            ("greedy".parse().unwrap(), "neighbour".parse().unwrap());
        db.create_app(&greedy).unwrap();
        db.create_app(&neighbour).unwrap();
        let domain = |n: usize| -> Domain { format!("d{n}.example.com").parse().unwrap() };
        for n in 0..=MAX_CERTS_PER_APP {
            db.add_domain(&greedy, &domain(n)).unwrap();
        }
        for n in 0..MAX_CERTS_PER_APP {
            db.put_cert(manual(&greedy, &domain(n), "CA")).unwrap();
        }
        let over = db.put_cert(manual(&greedy, &domain(MAX_CERTS_PER_APP), "CA"));
        assert!(
            matches!(&over, Err(StoreError::Invalid(m)) if m.contains("the most an app may have")),
            "{over:?}"
        );
        // Replacing one it has is no new certificate.
        db.put_cert(manual(&greedy, &domain(0), "New CA")).unwrap();
        let shop: Domain = "shop.example.org".parse().unwrap();
        db.add_domain(&neighbour, &shop).unwrap();
        db.put_cert(manual(&neighbour, &shop, "CA")).unwrap();
        assert_eq!(db.certs(&greedy).unwrap().len(), MAX_CERTS_PER_APP);
        assert_eq!(db.certs(&neighbour).unwrap().len(), 1);
    }

    #[test]
    fn a_database_made_before_certificates_gains_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let hello: AppName = "hello".parse().unwrap();
        let www: Domain = "www.example.com".parse().unwrap();
        {
            let db = ControlDb::open(&path).unwrap();
            db.create_app(&hello).unwrap();
            db.add_domain(&hello, &www).unwrap();
            let conn = db.conn.lock();
            conn.execute_batch("DROP INDEX certs_by_app; DROP TABLE certs;")
                .unwrap();
            assert!(!has_certs_table(&conn));
        }
        let db = ControlDb::open(&path).unwrap();
        assert!(has_certs_table(&db.conn.lock()));
        assert_eq!(db.domains(&hello).unwrap(), vec![www.clone()]);
        db.put_cert(manual(&hello, &www, "CA")).unwrap();
        assert_eq!(db.certs(&hello).unwrap().len(), 1);
    }
}
