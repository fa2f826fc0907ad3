//! People on both backends alike. Removing a person: their tokens stop working, their
//! access to every app goes, others keep theirs, and a person added again under the same
//! email starts with nothing of it. Dashboard sessions: kept for every node, bounded per
//! token, ended by their time or a logout.

use chrono::Utc;
use wdeploy_core::{Digest, Person, TokenId};
use wdeploy_store::cluster::testing::NatsServer;
use wdeploy_store::cluster::{ClusterPeople, Nats};
use wdeploy_store::{AppId, People, RemovedUser, SessionRecord, StoreError, TokenRecord};

fn token(user: &Person, secret: &[u8], id: u8) -> TokenRecord {
    TokenRecord {
        id: TokenId::from_random(&[id, 2, 3, 4, 5, 6]),
        hash: Digest::of_bytes(secret),
        user: user.clone(),
        description: String::new(),
        created_at: Utc::now(),
    }
}

async fn removing_a_person(people: &dyn People) {
    let (bob, ann): (Person, Person) = ("bob@x.io".parse().unwrap(), "ann@x.io".parse().unwrap());
    let (shop, blog) = (AppId::random(), AppId::random());
    people.add_user(&bob, false).await.unwrap();
    people.add_user(&ann, false).await.unwrap();
    for (t, user) in [(1, &bob), (2, &bob), (3, &ann)] {
        let secret = format!("token {t}");
        people
            .add_token(&token(user, secret.as_bytes(), t))
            .await
            .unwrap();
    }
    people.grant(&shop, &bob).await.unwrap();
    people.grant(&blog, &bob).await.unwrap();
    people.grant(&shop, &ann).await.unwrap();

    let mut removed = people.remove_user(&bob).await.unwrap();
    removed.apps.sort();
    let mut apps = vec![shop.clone(), blog.clone()];
    apps.sort();
    assert_eq!(removed, RemovedUser { tokens: 2, apps });
    assert_eq!(
        people.token(&Digest::of_bytes(b"token 1")).await.unwrap(),
        None
    );
    assert_eq!(
        people.token(&Digest::of_bytes(b"token 2")).await.unwrap(),
        None
    );
    assert!(people.user(&bob).await.unwrap().is_none());
    assert!(!people.may_act_on(&shop, &bob).await.unwrap());
    assert!(people.apps_of(&bob).await.unwrap().is_empty());
    // Ann keeps all she had.
    assert!(
        people
            .token(&Digest::of_bytes(b"token 3"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        people.collaborators(&shop).await.unwrap(),
        vec![ann.clone()]
    );
    assert!(matches!(
        people.remove_user(&bob).await,
        Err(StoreError::NotFound(_))
    ));
    // Added again, bob starts afresh.
    people.add_user(&bob, false).await.unwrap();
    assert!(people.apps_of(&bob).await.unwrap().is_empty());
    assert_eq!(
        people.token(&Digest::of_bytes(b"token 1")).await.unwrap(),
        None
    );
}

async fn sessions(people: &dyn People) {
    let (token_id, other) = (
        TokenId::from_random(&[9, 9, 9, 9, 9, 1]),
        TokenId::from_random(&[9, 9, 9, 9, 9, 2]),
    );
    let now = Utc::now().timestamp_millis();
    let session = |secret: &str, ends_in_ms: i64| SessionRecord {
        secret: Digest::of_bytes(secret.as_bytes()),
        token: Digest::of_bytes(b"the token"),
        expires_ms: now + ends_in_ms,
    };
    let found = |token_id: &TokenId, secret: &str| {
        let secret = Digest::of_bytes(secret.as_bytes());
        let token_id = token_id.clone();
        async move { people.session(&token_id, &secret).await.unwrap() }
    };
    people
        .open_session(&token_id, session("one", 60_000), 2)
        .await
        .unwrap();
    people
        .open_session(&token_id, session("two", 120_000), 2)
        .await
        .unwrap();
    assert_eq!(
        found(&token_id, "one").await,
        Some(Digest::of_bytes(b"the token"))
    );
    assert_eq!(found(&other, "one").await, None, "another token's");
    assert_eq!(found(&token_id, "nothing").await, None);
    // A third: the one closest to its end makes room.
    people
        .open_session(&token_id, session("three", 180_000), 2)
        .await
        .unwrap();
    assert_eq!(found(&token_id, "one").await, None);
    assert!(found(&token_id, "two").await.is_some());
    assert!(found(&token_id, "three").await.is_some());
    // Logged out; ended.
    let two = Digest::of_bytes(b"two");
    people.close_session(&token_id, &two).await.unwrap();
    people.close_session(&token_id, &two).await.unwrap();
    assert_eq!(found(&token_id, "two").await, None);
    people
        .open_session(&other, session("gone", -1), 2)
        .await
        .unwrap();
    assert_eq!(found(&other, "gone").await, None, "past its end");
}

#[tokio::test]
async fn embedded() {
    let data = tempfile::tempdir().unwrap();
    let me = wdeploy_store::NodeInfo {
        name: "solo".parse().unwrap(),
        advertise: String::new(),
        started_at: Utc::now(),
        version: String::new(),
        leaving: false,
    };
    let store = wdeploy_store::embedded::open(data.path(), me).unwrap();
    removing_a_person(store.people.as_ref()).await;
    sessions(store.people.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster() {
    let server = NatsServer::start().unwrap();
    let nats = Nats::connect(&server.url(), &"node-a".parse().unwrap())
        .await
        .unwrap();
    let people = ClusterPeople::open(&nats).await.unwrap();
    removing_a_person(&people).await;
    sessions(&people).await;
}
