import Olm from "@matrix-org/olm";
await Olm.init();
const og = new Olm.OutboundGroupSession(); og.create();
const ig = new Olm.InboundGroupSession(); ig.create(og.session_key());
const body = "x".repeat(120);
const N=20000; const cts=[];
let t=performance.now();
for (let i=0;i<N;i++) cts.push(og.encrypt(JSON.stringify({type:"m.room.message",content:{msgtype:"m.text",body},room_id:"!abc:bench"})));
console.log("enc/s", N/((performance.now()-t)/1000), cts[0].length);
for (let pass=0;pass<2;pass++){
t=performance.now();
const ig2 = new Olm.InboundGroupSession(); ig2.create(og.session_key()); // note og advanced, index from N
const ig3 = new Olm.InboundGroupSession(); ig3.import_session(ig.export_session(0));
for (let i=0;i<N;i++) ig3.decrypt(cts[i]);
console.log("dec/s", N/((performance.now()-t)/1000));
}
t=performance.now();
for (let i=0;i<2000;i++){const o=new Olm.OutboundGroupSession();o.create();const s=new Olm.InboundGroupSession();s.create(o.session_key());s.pickle("k");o.free();s.free();}
console.log("sess/s", 2000/((performance.now()-t)/1000));
