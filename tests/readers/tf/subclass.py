# A subclassed keras.Model: tf.nn.relu, the pooling and the mean written in call().
import tensorflow as tf


class NiN(tf.keras.Model):
    def __init__(self, classes=10):
        super().__init__()
        specs = [(96, 11, 4, "valid"), (256, 5, 1, "same"), (384, 3, 1, "same"),
                 (classes, 3, 1, "same")]
        self.convs = [[tf.keras.layers.Conv2D(width, kernel, stride, padding),
                       tf.keras.layers.Conv2D(width, 1), tf.keras.layers.Conv2D(width, 1)]
                      for width, kernel, stride, padding in specs]
        self.dropout = tf.keras.layers.Dropout(0.5)

    def call(self, x, training=False):
        for index, block in enumerate(self.convs):
            if index == 3:
                x = self.dropout(x, training=training)
            for conv in block:
                x = tf.nn.relu(conv(x))
            if index < 3:
                x = tf.nn.max_pool2d(x, 3, 2, "VALID")
        return tf.reduce_mean(x, axis=[1, 2])


model = NiN()
