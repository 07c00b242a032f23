/* IEEE half precision (binary16) to and from f32, exactly as the hardware
 * converts (round to nearest even): for f16 weights, f16 KV rows and their
 * scales, wherever they are stored or sent. */
#ifndef DUET_HALF_H
#define DUET_HALF_H

#include <stdint.h>

float duet_fp16_to_fp32(uint16_t h);
uint16_t duet_fp32_to_fp16(float f);

#endif
