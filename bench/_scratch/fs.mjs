import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "node:fs"; import { tmpdir } from "node:os"; import { join } from "node:path";
const d = mkdtempSync(join(tmpdir(), "fsb-"));
const db = new Database(join(d,"x.db"));
db.pragma("locking_mode = EXCLUSIVE"); db.pragma("journal_mode = WAL"); db.pragma("synchronous = FULL");
db.exec("create table t(a integer primary key, b text)");
const ins = db.prepare("insert into t(b) values (?)");
const tx = db.transaction((n)=>{for(let i=0;i<n;i++) ins.run("y".repeat(200));});
for (const n of [1,50]) { const N=300; let t=performance.now(); for(let i=0;i<N;i++) tx(n); console.log(n,"rows/tx: ms/tx", (performance.now()-t)/N); }
rmSync(d,{recursive:true});
