// AudioWorklet processor: the microphone's samples, cut into chunks of `chunkSamples` 16-bit PCM, in order.
// Runs on the audio thread; live_mic.js numbers and sends each chunk.
class LiveLearnerPcmChunker extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions.chunkSamples;
    this.buffer = new Int16Array(this.size);
    this.filled = 0;
    this.port.onmessage = (ev) => {
      if (ev.data === "flush" && this.filled > 0) {
        this.port.postMessage(this.buffer.slice(0, this.filled));
        this.filled = 0;
      }
    };
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const v = Math.max(-1, Math.min(1, channel[i]));
        this.buffer[this.filled++] = v < 0 ? v * 32768 : v * 32767;
        if (this.filled === this.size) {
          this.port.postMessage(this.buffer, [this.buffer.buffer]);
          this.buffer = new Int16Array(this.size);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("livelearner-pcm-chunker", LiveLearnerPcmChunker);
