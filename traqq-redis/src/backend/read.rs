//! Reads in two pipelined rounds: plain reads first, then what their answers call for
//! (leaderboard ties, cross-slot unions).

use super::*;
use traqq_core::read::FieldSums;

/// Phase-one state of one read.
enum Pending {
    Done(ReadResult),
    Hash {
        cmd: usize,
        key: String,
    },
    /// One `HGETALL` per key, added up here (the keys may live on different nodes).
    Sum {
        cmds: Vec<usize>,
        keys: Vec<String>,
    },
    Count {
        cmd: usize,
        key: String,
    },
    Top {
        cmd: usize,
        key: String,
        limit: usize,
    },
    /// A leaderboard over several sorted sets, added up here.
    TopUnion {
        cmds: Vec<usize>,
        key: String,
        limit: usize,
    },
    Members {
        cmd: usize,
        key: String,
    },
    /// A union over keys in several cluster slots: their raw HLL strings are fetched first.
    CrossSlotCount {
        gets: Vec<usize>,
        keys: Vec<String>,
    },
}

/// Phase-two state of one read.
enum Finish {
    Done(ReadResult),
    Count {
        cmd: usize,
        key: String,
    },
    Top {
        head: Vec<(String, f64)>,
        boundary: f64,
        ties: usize,
        key: String,
        limit: usize,
    },
}

impl RedisStorage {
    /// Answers `reads` in two pipelined rounds (see `Storage::read`).
    pub(super) fn read_all(&self, reads: &[Read]) -> Result<Vec<ReadResult>> {
        // Phase one: every read's main command, all in one round trip per slot.
        let mut cmds: Vec<(u16, Cmd, String)> = Vec::with_capacity(reads.len());
        let mut push = |slot: u16, cmd: Cmd, label: &str| {
            cmds.push((slot, cmd, label.to_owned()));
            cmds.len() - 1
        };
        let mut pending = Vec::with_capacity(reads.len());
        for read in reads {
            pending.push(match read {
                Read::Hash(key) => {
                    let k = self.layout.physical(key);
                    let mut c = redis::cmd("HGETALL");
                    c.arg(k.as_ref());
                    Pending::Hash {
                        cmd: push(self.slot_of(&k), c, key),
                        key: key.clone(),
                    }
                }
                Read::Sum(keys) => Pending::Sum {
                    cmds: keys
                        .iter()
                        .map(|key| {
                            let k = self.layout.physical(key);
                            let mut c = redis::cmd("HGETALL");
                            c.arg(k.as_ref());
                            push(self.slot_of(&k), c, key)
                        })
                        .collect(),
                    keys: keys.clone(),
                },
                Read::Count(keys) if keys.is_empty() => Pending::Done(ReadResult::Count(0)),
                Read::Count(keys) => {
                    let physical: Vec<String> = keys
                        .iter()
                        .map(|k| self.layout.physical(k).into_owned())
                        .collect();
                    let first = self.slot_of(&physical[0]);
                    if physical.iter().all(|k| self.slot_of(k) == first) {
                        let mut c = redis::cmd("PFCOUNT");
                        physical.iter().for_each(|k| {
                            c.arg(k);
                        });
                        Pending::Count {
                            cmd: push(first, c, &keys[0]),
                            key: keys.join(","),
                        }
                    } else {
                        let gets = physical
                            .iter()
                            .map(|k| {
                                let mut c = redis::cmd("GET");
                                c.arg(k);
                                push(self.slot_of(k), c, k)
                            })
                            .collect();
                        Pending::CrossSlotCount { gets, keys: physical }
                    }
                }
                Read::Top { limit: 0, .. } => Pending::Done(ReadResult::Top(Vec::new())),
                Read::Top { keys, .. } if keys.is_empty() => Pending::Done(ReadResult::Top(Vec::new())),
                Read::Top { keys, limit } if keys.len() == 1 => {
                    let k = self.layout.physical(&keys[0]);
                    let last = isize::try_from(*limit).map_or(-1, |l| l - 1);
                    let mut c = redis::cmd("ZREVRANGE");
                    c.arg(k.as_ref()).arg(0).arg(last).arg("WITHSCORES");
                    Pending::Top {
                        cmd: push(self.slot_of(&k), c, &keys[0]),
                        key: keys[0].clone(),
                        limit: *limit,
                    }
                }
                Read::Top { keys, limit } => {
                    // Redis has no "union, then the best N": the union comes back whole and is
                    // cut here. The buckets of one leaderboard share a slot on a cluster; other
                    // unions read each set whole and add up here.
                    let physical: Vec<String> = keys
                        .iter()
                        .map(|k| self.layout.physical(k).into_owned())
                        .collect();
                    let first = self.slot_of(&physical[0]);
                    let cmds = if physical.iter().all(|k| self.slot_of(k) == first) {
                        let mut c = redis::cmd("ZUNION");
                        c.arg(physical.len());
                        physical.iter().for_each(|k| {
                            c.arg(k);
                        });
                        c.arg("WITHSCORES");
                        vec![push(first, c, &keys[0])]
                    } else {
                        physical
                            .iter()
                            .map(|k| {
                                let mut c = redis::cmd("ZRANGE");
                                c.arg(k).arg(0).arg(-1).arg("WITHSCORES");
                                push(self.slot_of(k), c, k)
                            })
                            .collect()
                    };
                    Pending::TopUnion {
                        cmds,
                        key: keys.join(","),
                        limit: *limit,
                    }
                }
                Read::Members(key) => {
                    let k = self.layout.physical(key);
                    let mut c = redis::cmd("SMEMBERS");
                    c.arg(k.as_ref());
                    Pending::Members {
                        cmd: push(self.slot_of(&k), c, key),
                        key: key.clone(),
                    }
                }
            });
        }
        let mut answers = if cmds.is_empty() {
            Vec::new()
        } else {
            self.exec(true, cmds)?
        };
        let mut take = |i: usize| std::mem::take(&mut answers[i]);

        // Phase two, only where needed: members tied with a cut-off leaderboard's last score
        // (Redis orders ties by member descending, the contract ascending), and cross-slot
        // unions.
        let mut cmds2: Vec<(u16, Cmd, String)> = Vec::new();
        let mut push2 = |slot: u16, cmd: Cmd, label: &str| {
            cmds2.push((slot, cmd, label.to_owned()));
            cmds2.len() - 1
        };
        let mut finishing = Vec::with_capacity(pending.len());
        for p in pending {
            finishing.push(match p {
                Pending::Done(r) => Finish::Done(r),
                Pending::Hash { cmd, key } => Finish::Done(ReadResult::Hash(values::hash(&key, take(cmd))?)),
                Pending::Sum { cmds, keys } => {
                    let mut sums = FieldSums::default();
                    for (cmd, key) in cmds.into_iter().zip(&keys) {
                        for (field, n) in values::hash(key, take(cmd))? {
                            sums.add(&field, n);
                        }
                    }
                    Finish::Done(sums.into_result())
                }
                Pending::Members { cmd, key } => {
                    Finish::Done(ReadResult::Members(values::strings(&key, take(cmd))?))
                }
                Pending::Count { cmd, key } => {
                    Finish::Done(ReadResult::Count(values::count(&key, take(cmd))?))
                }
                Pending::Top { cmd, key, limit } => {
                    let ranked = values::ranked(&key, take(cmd))?;
                    match ranked.last() {
                        Some((_, boundary, raw)) if ranked.len() >= limit => {
                            let k = self.layout.physical(&key);
                            let mut c = redis::cmd("ZRANGEBYSCORE");
                            c.arg(k.as_ref())
                                .arg(raw.as_str())
                                .arg(raw.as_str())
                                .arg("WITHSCORES");
                            let boundary = *boundary;
                            Finish::Top {
                                head: ranked
                                    .into_iter()
                                    .filter(|(_, s, _)| *s != boundary)
                                    .map(|(m, s, _)| (m, s))
                                    .collect(),
                                boundary,
                                ties: push2(self.slot_of(&k), c, &key),
                                key,
                                limit,
                            }
                        }
                        _ => {
                            let mut all: Vec<(String, f64)> =
                                ranked.into_iter().map(|(m, s, _)| (m, s)).collect();
                            sort_ranked(&mut all);
                            Finish::Done(ReadResult::Top(all))
                        }
                    }
                }
                Pending::TopUnion { cmds, key, limit } => {
                    let mut sums: hashbrown::HashMap<String, f64> = hashbrown::HashMap::new();
                    for cmd in cmds {
                        for (member, score, _) in values::ranked(&key, take(cmd))? {
                            *sums.entry(member).or_insert(0.0) += score;
                        }
                    }
                    let mut all: Vec<(String, f64)> = sums.into_iter().collect();
                    top_ranked(&mut all, limit);
                    Finish::Done(ReadResult::Top(all))
                }
                Pending::CrossSlotCount { gets, keys } => {
                    let mut present: Vec<(&String, Vec<u8>)> = Vec::new();
                    for (i, key) in gets.into_iter().zip(&keys) {
                        if let Some(bytes) = values::optional_bytes(key, take(i))? {
                            present.push((key, bytes));
                        }
                    }
                    match present.len() {
                        0 => Finish::Done(ReadResult::Count(0)),
                        1 => {
                            let key = present[0].0;
                            let mut c = redis::cmd("PFCOUNT");
                            c.arg(key.as_str());
                            Finish::Count {
                                cmd: push2(self.slot_of(key), c, key),
                                key: key.clone(),
                            }
                        }
                        _ => {
                            // Copy the sketches under one tag, count their union there.
                            let tag = self.tmp_union_tag();
                            let tmp_slot = slot(tag.as_bytes());
                            let tmp: Vec<String> = (0..present.len()).map(|i| format!("{tag}:{i}")).collect();
                            for (name, (_, bytes)) in tmp.iter().zip(&present) {
                                let mut c = redis::cmd("SET");
                                c.arg(name).arg(bytes.as_slice()).arg("PX").arg(UNION_TMP_TTL_MS);
                                push2(tmp_slot, c, &tag);
                            }
                            let mut count = redis::cmd("PFCOUNT");
                            let mut del = redis::cmd("DEL");
                            tmp.iter().for_each(|k| {
                                count.arg(k);
                                del.arg(k);
                            });
                            let cmd = push2(tmp_slot, count, &tag);
                            push2(tmp_slot, del, &tag);
                            Finish::Count {
                                cmd,
                                key: keys.join(","),
                            }
                        }
                    }
                }
            });
        }
        let mut answers2 = if cmds2.is_empty() {
            Vec::new()
        } else {
            self.exec(true, cmds2)?
        };
        let mut take2 = |i: usize| std::mem::take(&mut answers2[i]);
        finishing
            .into_iter()
            .map(|f| {
                Ok(match f {
                    Finish::Done(r) => r,
                    Finish::Count { cmd, key } => ReadResult::Count(values::count(&key, take2(cmd))?),
                    Finish::Top {
                        mut head,
                        boundary,
                        ties,
                        key,
                        limit,
                    } => {
                        head.extend(
                            values::ranked(&key, take2(ties))?
                                .into_iter()
                                .filter(|(_, s, _)| *s == boundary)
                                .map(|(m, s, _)| (m, s)),
                        );
                        sort_ranked(&mut head);
                        head.truncate(limit);
                        ReadResult::Top(head)
                    }
                })
            })
            .collect()
    }
}
