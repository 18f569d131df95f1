// predict.js — runs an ONNX model written by `fewmul export --onnx` in
// onnxruntime-node (tests/cli_onnx.sh): reads N raw 8-bit images of H x W x C
// pixels (the IDX files' bytes), feeds them as the float tensor "pixels"
// [N, H, W, C] in batches, and prints one line per image: the predicted class
// (the first largest score, as fewmul infer picks it) and the margin between
// the two largest scores (to count near-ties).
// Usage: node predict.js ORT_MODULE MODEL.onnx IMAGES.raw N H W C
'use strict';
const fs = require('fs');
const [ortPath, model, images, n, h, w, c] = process.argv.slice(2);
const ort = require(ortPath);
const N = +n, D = +h * +w * +c;

async function main() {
    const pixels = fs.readFileSync(images);
    if (pixels.length < N * D)
        throw new Error(`${images}: ${pixels.length} bytes, fewer than ${N} images of ${D}`);
    const session = await ort.InferenceSession.create(model, {intraOpNumThreads: 1});
    const out = [];
    const batch = 500;
    for (let start = 0; start < N; start += batch) {
        const count = Math.min(batch, N - start);
        const data = new Float32Array(count * D);
        for (let i = 0; i < count * D; i++)
            data[i] = pixels[start * D + i];
        const feeds = {pixels: new ort.Tensor('float32', data, [count, +h, +w, +c])};
        const result = await session.run(feeds);
        const scores = result.scores.data, classes = result.scores.dims[1];
        for (let e = 0; e < count; e++) {
            let best = 0, second = -Infinity;
            const s = scores.subarray(e * classes, (e + 1) * classes);
            for (let k = 1; k < classes; k++)
                if (s[k] > s[best]) best = k;
            for (let k = 0; k < classes; k++)
                if (k !== best && s[k] > second) second = s[k];
            out.push(`${best} ${s[best] - second}`);
        }
    }
    process.stdout.write(out.join('\n') + '\n');
}
main().catch((e) => { console.error(String(e && e.message || e)); process.exit(1); });
