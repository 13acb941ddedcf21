import { monitorEventLoopDelay } from "node:perf_hooks";
const h = monitorEventLoopDelay({ resolution: 1 }); h.enable();
const iv = setInterval(()=>{ JSON.stringify({a:1}); }, 5);
setTimeout(()=>{ h.disable(); clearInterval(iv); console.log(h.percentile(50)/1e6, h.percentile(99)/1e6, h.max/1e6, h.min/1e6, h.count); }, 2000);
